"""WeCom's encrypted callbacks (WXBizMsgCrypt), the protocol layer only: no HTTP, no database.

WeCom signs and encrypts what it sends to a callback URL (wecom-api.md §5):

- the signature is `sha1_hex("".join(sorted([token, timestamp, nonce, encrypted])))`;
- the key is `b64decode(EncodingAESKey + "=")` (32 bytes), the cipher AES-256-CBC with the first
  16 bytes of the key as IV;
- the plaintext is `random16 ‖ uint32_be(len(msg)) ‖ msg ‖ receiveid`, padded PKCS#7-style to a
  multiple of **32** bytes (pad values 1..32: a stock 16-byte unpadder refuses real traffic).

A URL check (GET) carries the encrypted text as `echostr` (`open_echo`); an event (POST) carries
it in an XML envelope (`open_message`), and the decrypted text is an XML event (`parse_event`,
§6). Every refusal is one `CallbackError` whose `reason` names the check that failed.

XML is read with defusedxml: a DOCTYPE, an entity or an external reference is refused, and so
is a document over `MAX_XML_BYTES`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Literal
from xml.etree.ElementTree import Element, ParseError

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped]

#: What a callback's Token may be (wecom-api.md §5.1): 1 to 32 letters and digits. Anchored, for
#: `re.fullmatch` here and for the admin layer's checks of the same setting.
TOKEN_PATTERN = r"^[A-Za-z0-9]{1,32}$"
#: What an EncodingAESKey may be: exactly 43 letters and digits (base64 of 32 bytes, less its
#: `=`).
AES_KEY_PATTERN = r"^[A-Za-z0-9]{43}$"
#: The largest envelope or event document read, in bytes (the server's body limit too).
MAX_XML_BYTES = 64 * 1024
#: PKCS#7 padding is to this block size, not AES's 16.
PAD_BLOCK = 32
#: The random prefix of every plaintext.
RANDOM_BYTES = 16

Reason = Literal["signature", "receive_id", "padding", "base64", "length", "utf8", "xml", "key"]


class CallbackError(Exception):
    """A callback, or a callback configuration, that is refused. `reason` says which check:

    - `signature`: msg_signature does not match (a wrong token, or a changed message);
    - `receive_id`: the message was encrypted for another corporation (or suite);
    - `padding`: the ciphertext is not whole 32-byte blocks, or its padding is not PKCS#7-to-32
      (a wrong EncodingAESKey ends here too);
    - `base64`: the encrypted text is not base64;
    - `length`: the plaintext is too short for its header, or its length field runs past it;
    - `utf8`: the message is not UTF-8;
    - `xml`: an envelope or event that is not XML, is too large, has a DTD or an entity, or has
      no Encrypt;
    - `key`: the Token or EncodingAESKey is not of the form WeCom gives.

    The reason is safe to log; nothing secret is in it.
    """

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


class CallbackCrypto:
    """One callback configuration: its Token, EncodingAESKey and receiveid (the CorpID for a
    self-built app). Holds the secrets; its repr shows none of them."""

    __slots__ = ("_cipher", "_key", "_token", "receive_id")

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if not re.fullmatch(TOKEN_PATTERN, token) or not re.fullmatch(
            AES_KEY_PATTERN, encoding_aes_key
        ):
            raise CallbackError("key")
        key = base64.b64decode(encoding_aes_key + "=")
        if len(key) != 32:  # cannot happen for 43 base64 characters; kept as a guard
            raise CallbackError("key")
        self._token = token
        self._key = key
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))
        self.receive_id = receive_id

    def __repr__(self) -> str:
        return f"CallbackCrypto(receive_id={self.receive_id!r})"

    # -- signature ----------------------------------------------------------------------------

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        """The msg_signature WeCom sends with `encrypted` (lower-case sha1 hex)."""
        parts = sorted([self._token, timestamp, nonce, encrypted])
        # SHA-1 is WeCom's choice, not ours: the protocol fixes it.
        return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()  # noqa: S324

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        """Raise `CallbackError("signature")` unless `msg_signature` signs `encrypted`."""
        try:
            expected = self.signature(timestamp, nonce, encrypted).encode("ascii")
            given = msg_signature.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate in a query parameter
            raise CallbackError("signature") from None
        if not hmac.compare_digest(expected, given):
            raise CallbackError("signature")

    # -- encryption ---------------------------------------------------------------------------

    def decrypt(self, encrypted: str) -> str:
        """The message inside `encrypted` (base64). Checks, in order: base64, whole 32-byte
        blocks, the padding (every pad byte), the length field, the receiveid, UTF-8."""
        try:
            ciphertext = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):  # ValueError: a non-ASCII character
            raise CallbackError("base64") from None
        if not ciphertext or len(ciphertext) % PAD_BLOCK:
            raise CallbackError("padding")
        decryptor = self._cipher.decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        content = _unpad(padded)
        start = RANDOM_BYTES + 4
        size = int.from_bytes(content[RANDOM_BYTES:start], "big")
        if size > len(content) - start:  # also when the header itself is cut (room < 0)
            raise CallbackError("length")
        message, receive_id = content[start : start + size], content[start + size :]
        if receive_id != self.receive_id.encode("utf-8"):
            raise CallbackError("receive_id")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError:
            raise CallbackError("utf8") from None

    def encrypt(self, plaintext: str, random16: bytes | None = None) -> str:
        """`plaintext` encrypted as WeCom would (base64). `random16` is the random prefix; it is
        drawn from `secrets` unless given (the tests give it to reproduce official vectors)."""
        if random16 is None:
            random16 = secrets.token_hex(RANDOM_BYTES // 2).encode("ascii")
        if len(random16) != RANDOM_BYTES:
            raise ValueError(f"random16 must be {RANDOM_BYTES} bytes")
        message = plaintext.encode("utf-8")
        content = (
            random16 + len(message).to_bytes(4, "big") + message + self.receive_id.encode("utf-8")
        )
        encryptor = self._cipher.encryptor()
        ciphertext = encryptor.update(_pad(content)) + encryptor.finalize()
        return base64.b64encode(ciphertext).decode("ascii")

    # -- whole callbacks ----------------------------------------------------------------------

    def open_echo(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """The URL check (GET): verify, then decrypt the (already URL-decoded) `echostr`. The
        answer is the plaintext, as it is."""
        self.verify(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def open_message(
        self, msg_signature: str, timestamp: str, nonce: str, envelope_xml: bytes
    ) -> str:
        """An event (POST): read the envelope, verify the signature over its Encrypt text, then
        decrypt it. Returns the event's plaintext XML (see `parse_event`)."""
        encrypted, _to_user = envelope_fields(envelope_xml)
        self.verify(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def seal_message(self, plaintext: str, timestamp: str, nonce: str) -> tuple[bytes, str]:
        """What WeCom would POST for `plaintext`: the envelope (ToUserName, Encrypt) and its
        msg_signature, which goes in the query with `timestamp` and `nonce`."""
        encrypted = self.encrypt(plaintext)
        envelope = (
            f"<xml><ToUserName>{_cdata(self.receive_id)}</ToUserName>"
            f"<Encrypt>{_cdata(encrypted)}</Encrypt></xml>"
        )
        return envelope.encode("utf-8"), self.signature(timestamp, nonce, encrypted)


def _pad(content: bytes) -> bytes:
    """PKCS#7 to a multiple of 32: 1 to 32 bytes, each holding their count."""
    count = PAD_BLOCK - len(content) % PAD_BLOCK
    return content + bytes([count]) * count


def _unpad(padded: bytes) -> bytes:
    """Undo `_pad`, checking the count (1..32, within the buffer) and every pad byte."""
    count = padded[-1]
    if not 1 <= count <= PAD_BLOCK or count > len(padded):
        raise CallbackError("padding")
    if not hmac.compare_digest(padded[-count:], bytes([count]) * count):
        raise CallbackError("padding")
    return padded[:-count]


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


# -- XML --------------------------------------------------------------------------------------


def _parse_xml(document: str | bytes) -> Element:
    size = len(document.encode("utf-8")) if isinstance(document, str) else len(document)
    if size > MAX_XML_BYTES:
        raise CallbackError("xml")
    try:
        root: Element = fromstring(document, forbid_dtd=True)
    except (ParseError, ValueError):  # ValueError: defusedxml's DTDForbidden, EntitiesForbidden...
        raise CallbackError("xml") from None
    return root


def envelope_fields(xml: bytes) -> tuple[str, str | None]:
    """An event envelope's Encrypt text and ToUserName (None when absent). The ToUserName is the
    receiveid of third-party data callbacks."""
    root = _parse_xml(xml)
    encrypted = root.findtext("Encrypt")
    if not encrypted:
        raise CallbackError("xml")
    return encrypted, root.findtext("ToUserName")


@dataclass(frozen=True)
class WeComEvent:
    """A decrypted callback message (wecom-api.md §6). `fields` holds the text of every other
    simple child element (CDATA or not; the first of a repeated name), by element name; elements
    with children (ExtAttr) are left out. Unknown events parse the same way."""

    msg_type: str | None
    event: str | None
    change_type: str | None
    create_time: int | None
    fields: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def user_id(self) -> str | None:
        return self.fields.get("UserID")

    @property
    def new_user_id(self) -> str | None:
        """Set on update_user when the member's UserID changed: the new one."""
        return self.fields.get("NewUserID")

    @property
    def party_id(self) -> str | None:
        """The department's Id, on party events."""
        return self.fields.get("Id")


_HEADER = frozenset({"MsgType", "Event", "ChangeType", "CreateTime"})


def parse_event(plaintext_xml: str) -> WeComEvent:
    """The event in a decrypted callback message. Raises `CallbackError("xml")` for anything
    that is not a bounded, DTD-free XML document."""
    root = _parse_xml(plaintext_xml)
    simple: dict[str, str] = {}
    for child in root:
        if isinstance(child.tag, str) and len(child) == 0:
            simple.setdefault(child.tag, child.text or "")
    create_time = simple.get("CreateTime", "").strip()
    return WeComEvent(
        msg_type=_header(simple, "MsgType"),
        event=_header(simple, "Event"),
        change_type=_header(simple, "ChangeType"),
        create_time=int(create_time) if re.fullmatch(r"[0-9]{1,20}", create_time) else None,
        fields={name: text for name, text in simple.items() if name not in _HEADER},
    )


def _header(simple: dict[str, str], name: str) -> str | None:
    text = simple.get(name)
    return None if text is None else text.strip()
