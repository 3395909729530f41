"""iam/federation/wecom/callbacks.py: WeCom's callback crypto against the official test vectors
(Set A, /work/shared/docs/wecom-api.md §5.5), the refusals, and the contact-change events (§6).

The vectors are copied exactly as the doc gives them; the negative cases are built here with the
same key, so each fails for the one reason it names."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from iam.federation.wecom.callbacks import (
    AES_KEY_PATTERN,
    MAX_XML_BYTES,
    TOKEN_PATTERN,
    CallbackCrypto,
    CallbackError,
    WeComEvent,
    envelope_fields,
    parse_event,
)

# -- Set A (wecom-api.md §5.5) ----------------------------------------------------------------

TOKEN = "QDG6eK"
ENCODING_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
AES_KEY_HEX = "8d69989bbaabe67328014c194631ad0719b3dca035b64023df292447aab60760"
CORP_ID = "wx5823bf96d3bd56c7"

A1_URL = (
    "/cgi-bin/wxpush?msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589"
    "&nonce=263014780&echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp%2B4"
    "RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D"
)
A1_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
A1_TIMESTAMP = "1409659589"
A1_NONCE = "263014780"
A1_ECHOSTR = (
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
)
A1_PLAINTEXT = "1616140317555161061"
A1_RANDOM = b"c41b64491c2468d0"

A2_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
A2_TIMESTAMP = "1409659813"
A2_NONCE = "1372623149"
A2_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj"
    "911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06"
    "DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH"
    "03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6B"
    "pNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E"
    "7Q=="
)
A2_ENVELOPE = (
    f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
    f"<Encrypt><![CDATA[{A2_ENCRYPT}]]></Encrypt></xml>"
).encode()
A2_PLAINTEXT = "\n".join(
    [
        "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>",
        "<FromUserName><![CDATA[mycreate]]></FromUserName>",
        "<CreateTime>1409659813</CreateTime>",
        "<MsgType><![CDATA[text]]></MsgType>",
        "<Content><![CDATA[hello]]></Content>",
        "<MsgId>4561255354251345929</MsgId>",
        "<AgentID>218</AgentID>",
        "</xml>",
    ]
)
A2_RANDOM = b"0960688932c47ef1"

A3_SIGNATURE = "0623cbc5a8cbee5bcc137c70de99575366fc2af3"
A3_TIMESTAMP = "1409659813"
A3_NONCE = "1372623149"
A3_ENCRYPT = (
    "CZWs4CWRpI4VolQlvn4dlEC1alN2MUEY2VklGehgBVLBrlVF7SyT+SV+Toj43l4ayJ9UMGKphktKKmP7B2j/P1ey67XB8P"
    "BgS7Wr5/8+w/yWriZv3Vmoo/MH3/1HsIWZrPQ3N2mJrelStIfI2Y8kLKXA7EhfZgZX4o+ffdkZDM76SEl79Ib9mw7TGjZ9A"
    "w/x/A2VjNbV1E8BtEbRxYYcQippYNw7hr8sFfa3nW1xLdxokt8QkRX83vK3DFP2F6TQFPL2Tu98UwhcUpPvdJBuu1/yiOQI"
    "ScppV3eOuLWEsko="
)
A3_PLAINTEXT = (
    '{"ToUserName":"wx5823bf96d3bd56c7","FromUserName":"mycreate","CreateTime": 1409659813,'
    '"MsgType":"text","Content":"hello","MsgId":4561255354251345929,"AgentID": 218}'
)
A3_RANDOM = b"EDH75AiKExevY8L3"


@pytest.fixture
def crypto() -> CallbackCrypto:
    return CallbackCrypto(TOKEN, ENCODING_AES_KEY, CORP_ID)


def _reason(error: pytest.ExceptionInfo[CallbackError]) -> str:
    return error.value.reason


# -- known answers ----------------------------------------------------------------------------


def test_the_aes_key_is_the_encoding_key_decoded() -> None:
    assert base64.b64decode(ENCODING_AES_KEY + "=").hex() == AES_KEY_HEX
    assert len(bytes.fromhex(AES_KEY_HEX)) == 32


def test_a1_echostr_url_decodes_to_the_documented_text() -> None:
    query = parse_qs(urlsplit(A1_URL).query, strict_parsing=True)
    assert query["echostr"] == [A1_ECHOSTR]
    assert query["msg_signature"] == [A1_SIGNATURE]
    assert query["timestamp"] == [A1_TIMESTAMP]
    assert query["nonce"] == [A1_NONCE]


def test_a1_signature_matches(crypto: CallbackCrypto) -> None:
    assert crypto.signature(A1_TIMESTAMP, A1_NONCE, A1_ECHOSTR) == A1_SIGNATURE
    crypto.verify(A1_SIGNATURE, A1_TIMESTAMP, A1_NONCE, A1_ECHOSTR)


def test_a1_open_echo_answers_the_plaintext(crypto: CallbackCrypto) -> None:
    assert crypto.open_echo(A1_SIGNATURE, A1_TIMESTAMP, A1_NONCE, A1_ECHOSTR) == A1_PLAINTEXT


def test_a2_signature_over_the_encrypt_text_matches(crypto: CallbackCrypto) -> None:
    assert crypto.signature(A2_TIMESTAMP, A2_NONCE, A2_ENCRYPT) == A2_SIGNATURE
    crypto.verify(A2_SIGNATURE, A2_TIMESTAMP, A2_NONCE, A2_ENCRYPT)


def test_a2_envelope_fields(crypto: CallbackCrypto) -> None:
    assert envelope_fields(A2_ENVELOPE) == (A2_ENCRYPT, CORP_ID)


def test_a2_open_message_gives_the_exact_plaintext(crypto: CallbackCrypto) -> None:
    plaintext = crypto.open_message(A2_SIGNATURE, A2_TIMESTAMP, A2_NONCE, A2_ENVELOPE)
    assert plaintext == A2_PLAINTEXT
    assert len(plaintext.encode()) == 284
    digest = hashlib.sha256(plaintext.encode()).hexdigest()
    assert digest.startswith("62f23e2d")
    assert digest.endswith("683f32")


def test_a3_json_variant_decrypts(crypto: CallbackCrypto) -> None:
    plaintext = crypto.decrypt(A3_ENCRYPT)
    assert plaintext == A3_PLAINTEXT
    assert len(plaintext.encode()) == 164


def test_a3_signature_matches(crypto: CallbackCrypto) -> None:
    crypto.verify(A3_SIGNATURE, A3_TIMESTAMP, A3_NONCE, A3_ENCRYPT)


@pytest.mark.parametrize(
    ("plaintext", "random16", "official"),
    [
        pytest.param(A1_PLAINTEXT, A1_RANDOM, A1_ECHOSTR, id="A1"),
        pytest.param(A2_PLAINTEXT, A2_RANDOM, A2_ENCRYPT, id="A2"),
        pytest.param(A3_PLAINTEXT, A3_RANDOM, A3_ENCRYPT, id="A3"),
    ],
)
def test_encrypt_reproduces_the_official_ciphertext(
    crypto: CallbackCrypto, plaintext: str, random16: bytes, official: str
) -> None:
    assert crypto.encrypt(plaintext, random16) == official


@pytest.mark.parametrize(
    ("official", "total", "pad"),
    [
        pytest.param(A1_ECHOSTR, 64, 7, id="A1"),
        pytest.param(A2_ENCRYPT, 352, 30, id="A2"),
        pytest.param(A3_ENCRYPT, 224, 22, id="A3"),
    ],
)
def test_the_official_padding_is_pkcs7_to_32(official: str, total: int, pad: int) -> None:
    """The vectors' own pads (A3: 22, which a 16-byte unpadder refuses)."""
    plain = _raw_decrypt(base64.b64decode(official))
    assert len(plain) == total
    assert plain[-pad:] == bytes([pad]) * pad


# -- negatives: signature ---------------------------------------------------------------------


def _flip(hex_text: str, index: int) -> str:
    replacement = "0" if hex_text[index] != "0" else "1"
    return hex_text[:index] + replacement + hex_text[index + 1 :]


@pytest.mark.parametrize("index", [0, 17, 39])
def test_a1_flipped_signature_character_is_refused(crypto: CallbackCrypto, index: int) -> None:
    with pytest.raises(CallbackError) as error:
        crypto.open_echo(_flip(A1_SIGNATURE, index), A1_TIMESTAMP, A1_NONCE, A1_ECHOSTR)
    assert _reason(error) == "signature"


@pytest.mark.parametrize("index", [0, 21, 39])
def test_a2_flipped_signature_character_is_refused(crypto: CallbackCrypto, index: int) -> None:
    with pytest.raises(CallbackError) as error:
        crypto.open_message(_flip(A2_SIGNATURE, index), A2_TIMESTAMP, A2_NONCE, A2_ENVELOPE)
    assert _reason(error) == "signature"


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(A1_SIGNATURE.upper(), id="upper-case"),
        pytest.param(A1_SIGNATURE[:-1], id="short"),
        pytest.param(A1_SIGNATURE + "0", id="long"),
        pytest.param("", id="empty"),
        pytest.param("\udcff" * 40, id="lone-surrogates"),
        pytest.param("签" * 40, id="non-ascii"),
    ],
)
def test_a1_malformed_signature_is_refused(crypto: CallbackCrypto, signature: str) -> None:
    with pytest.raises(CallbackError) as error:
        crypto.verify(signature, A1_TIMESTAMP, A1_NONCE, A1_ECHOSTR)
    assert _reason(error) == "signature"


@pytest.mark.parametrize(
    ("field", "value"),
    [("timestamp", "1409659590"), ("nonce", "263014781")],
)
def test_a1_changed_timestamp_or_nonce_is_refused(
    crypto: CallbackCrypto, field: str, value: str
) -> None:
    args = {"timestamp": A1_TIMESTAMP, "nonce": A1_NONCE} | {field: value}
    with pytest.raises(CallbackError) as error:
        crypto.open_echo(A1_SIGNATURE, args["timestamp"], args["nonce"], A1_ECHOSTR)
    assert _reason(error) == "signature"


@pytest.mark.parametrize("token", ["QDG6eL", "qdg6ek", "QDG6eKx"])
def test_wrong_token_is_refused(token: str) -> None:
    crypto = CallbackCrypto(token, ENCODING_AES_KEY, CORP_ID)
    with pytest.raises(CallbackError) as error:
        crypto.open_echo(A1_SIGNATURE, A1_TIMESTAMP, A1_NONCE, A1_ECHOSTR)
    assert _reason(error) == "signature"


def test_wrong_token_refuses_an_event_too() -> None:
    crypto = CallbackCrypto("QDG6eL", ENCODING_AES_KEY, CORP_ID)
    with pytest.raises(CallbackError) as error:
        crypto.open_message(A2_SIGNATURE, A2_TIMESTAMP, A2_NONCE, A2_ENVELOPE)
    assert _reason(error) == "signature"


# -- negatives: receiveid ---------------------------------------------------------------------


@pytest.mark.parametrize("receive_id", ["wx5823bf96d3bd56c8", "wx5823bf96d3bd56c", "", "ww1"])
def test_wrong_receive_id_is_refused(receive_id: str) -> None:
    crypto = CallbackCrypto(TOKEN, ENCODING_AES_KEY, receive_id)
    with pytest.raises(CallbackError) as error:
        crypto.open_echo(A1_SIGNATURE, A1_TIMESTAMP, A1_NONCE, A1_ECHOSTR)
    assert _reason(error) == "receive_id"


def test_wrong_receive_id_refuses_an_event_after_its_signature_passes() -> None:
    crypto = CallbackCrypto(TOKEN, ENCODING_AES_KEY, "wx0000000000000000")
    with pytest.raises(CallbackError) as error:
        crypto.open_message(A2_SIGNATURE, A2_TIMESTAMP, A2_NONCE, A2_ENVELOPE)
    assert _reason(error) == "receive_id"


# -- negatives: ciphertext, padding, length ---------------------------------------------------


def _cipher() -> Cipher[modes.CBC]:
    key = bytes.fromhex(AES_KEY_HEX)
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def _raw_encrypt(padded: bytes) -> str:
    """AES-256-CBC of `padded` with Set A's key and no padding added: what a sender that pads
    badly (or not at all) would send."""
    assert len(padded) % 16 == 0
    encryptor = _cipher().encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def _raw_decrypt(ciphertext: bytes) -> bytes:
    decryptor = _cipher().decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def _content(
    message: bytes, receive_id: bytes = CORP_ID.encode(), size: int | None = None
) -> bytes:
    length = len(message) if size is None else size
    return b"0123456789abcdef" + length.to_bytes(4, "big") + message + receive_id


def _pad_with(content: bytes, tail: bytes) -> bytes:
    """`content`, filled with zero bytes up to a 32-byte boundary so that `tail` ends it."""
    fill = -(len(content) + len(tail)) % 32
    return content + b"\x00" * fill + tail


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"\x00", id="pad-0"),
        pytest.param(bytes([33]), id="pad-33"),
        pytest.param(bytes([255]), id="pad-255"),
        pytest.param(bytes([33]) * 33, id="pad-33-all-33"),
        pytest.param(bytes([64]) * 64, id="pad-64-all-64"),
        pytest.param(b"\x05\x05\x05\x04\x05", id="pad-5-one-byte-off"),
        pytest.param(b"\x06\x05\x05\x05\x05", id="pad-5-of-6"),
        pytest.param(b"\x00" + bytes([32]) * 31, id="pad-32-first-byte-off"),
        pytest.param(bytes([7]) * 6 + b"\x08" + bytes([7]), id="pad-7-middle-byte-off"),
    ],
)
def test_bad_padding_is_refused(crypto: CallbackCrypto, tail: bytes) -> None:
    encrypted = _raw_encrypt(_pad_with(_content(b"hello"), tail))
    with pytest.raises(CallbackError) as error:
        crypto.decrypt(encrypted)
    assert _reason(error) == "padding"


def test_a_pad_of_33_over_a_single_block_is_refused(crypto: CallbackCrypto) -> None:
    with pytest.raises(CallbackError) as error:
        crypto.decrypt(_raw_encrypt(bytes([33]) * 32))
    assert _reason(error) == "padding"


def test_padding_to_16_only_is_refused(crypto: CallbackCrypto) -> None:
    """A stock PKCS#7-to-16 sender: 48 bytes, not whole 32-byte blocks."""
    content = _content(b"hi")  # 16 + 4 + 2 + 18 = 40 bytes
    padded = content + bytes([8]) * 8
    with pytest.raises(CallbackError) as error:
        crypto.decrypt(_raw_encrypt(padded))
    assert _reason(error) == "padding"


def test_a_wrong_aes_key_is_refused(crypto: CallbackCrypto) -> None:
    """A1 opened with another key decrypts to noise: here its last byte is no valid pad."""
    other = CallbackCrypto(TOKEN, "A" * 43, CORP_ID)
    with pytest.raises(CallbackError) as error:
        other.decrypt(A1_ECHOSTR)
    assert _reason(error) == "padding"


@pytest.mark.parametrize(
    "encrypted",
    [
        pytest.param(A1_ECHOSTR[:-1], id="drop-1"),
        pytest.param(A1_ECHOSTR[:-2], id="drop-2"),
        pytest.param(A1_ECHOSTR[:-3], id="drop-3"),
        pytest.param(A1_ECHOSTR[:-5], id="drop-5"),
        pytest.param(A1_ECHOSTR.replace("+", " "), id="plus-as-space"),
        pytest.param(A1_ECHOSTR + "!", id="junk"),
        pytest.param("P9nAzCzy签", id="non-ascii"),
    ],
)
def test_truncated_or_invalid_base64_is_refused(crypto: CallbackCrypto, encrypted: str) -> None:
    with pytest.raises(CallbackError) as error:
        crypto.decrypt(encrypted)
    assert _reason(error) == "base64"


@pytest.mark.parametrize(
    "encrypted",
    [
        pytest.param(A1_ECHOSTR[:-4], id="63-bytes"),
        pytest.param(base64.b64encode(base64.b64decode(A1_ECHOSTR)[:32]).decode(), id="32-bytes"),
        pytest.param("", id="empty"),
    ],
)
def test_truncated_ciphertext_is_refused(crypto: CallbackCrypto, encrypted: str) -> None:
    """Valid base64 of a cut ciphertext: not whole blocks, or a first block alone whose last
    byte is no valid pad."""
    with pytest.raises(CallbackError) as error:
        crypto.decrypt(encrypted)
    assert _reason(error) == "padding"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(_content(b"short", size=1000), id="1000-past-5"),
        pytest.param(_content(b"short", size=6 + len(CORP_ID)), id="one-past"),
        pytest.param(_content(b"short", size=2**32 - 1), id="uint32-max"),
        pytest.param(b"0123456789abcdef\x00\x00", id="no-room-for-the-length"),
        pytest.param(b"0123456789", id="shorter-than-the-random"),
    ],
)
def test_length_past_the_buffer_is_refused(crypto: CallbackCrypto, content: bytes) -> None:
    count = 32 - len(content) % 32
    encrypted = _raw_encrypt(content + bytes([count]) * count)
    with pytest.raises(CallbackError) as error:
        crypto.decrypt(encrypted)
    assert _reason(error) == "length"


def test_a_length_that_swallows_the_receive_id_is_refused(crypto: CallbackCrypto) -> None:
    """The length field covers the message and the receiveid: what is left matches nothing."""
    content = _content(b"short", size=5 + len(CORP_ID))
    count = 32 - len(content) % 32
    with pytest.raises(CallbackError) as error:
        crypto.decrypt(_raw_encrypt(content + bytes([count]) * count))
    assert _reason(error) == "receive_id"


def test_a_message_that_is_not_utf8_is_refused(crypto: CallbackCrypto) -> None:
    content = _content(b"\xff\xfe")
    count = 32 - len(content) % 32
    with pytest.raises(CallbackError) as error:
        crypto.decrypt(_raw_encrypt(content + bytes([count]) * count))
    assert _reason(error) == "utf8"


# -- negatives: XML ---------------------------------------------------------------------------

BILLION_LAUGHS = (
    b"""<?xml version="1.0"?>
<!DOCTYPE xml [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<xml><ToUserName>&lol9;</ToUserName><Encrypt><![CDATA["""
    + A2_ENCRYPT.encode()
    + b"]]></Encrypt></xml>"
)

HOSTILE_ENVELOPES = [
    pytest.param(BILLION_LAUGHS, id="billion-laughs"),
    pytest.param(
        b'<!DOCTYPE xml [<!ENTITY corp "wx5823bf96d3bd56c7">]>'
        b"<xml><ToUserName>&corp;</ToUserName><Encrypt>"
        + A2_ENCRYPT.encode()
        + b"</Encrypt></xml>",
        id="internal-entity",
    ),
    pytest.param(
        b'<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<xml><ToUserName>&x;</ToUserName><Encrypt>" + A2_ENCRYPT.encode() + b"</Encrypt></xml>",
        id="external-entity",
    ),
    pytest.param(
        b"<!DOCTYPE xml><xml><Encrypt>" + A2_ENCRYPT.encode() + b"</Encrypt></xml>", id="dtd"
    ),
    pytest.param(
        b'<!DOCTYPE xml SYSTEM "http://example.invalid/x.dtd"><xml><Encrypt>'
        + A2_ENCRYPT.encode()
        + b"</Encrypt></xml>",
        id="external-dtd",
    ),
]


@pytest.mark.parametrize("envelope", HOSTILE_ENVELOPES)
def test_envelope_with_a_dtd_or_entity_is_refused(crypto: CallbackCrypto, envelope: bytes) -> None:
    with pytest.raises(CallbackError) as error:
        crypto.open_message(A2_SIGNATURE, A2_TIMESTAMP, A2_NONCE, envelope)
    assert _reason(error) == "xml"


@pytest.mark.parametrize("envelope", HOSTILE_ENVELOPES)
def test_event_with_a_dtd_or_entity_is_refused(envelope: bytes) -> None:
    with pytest.raises(CallbackError) as error:
        parse_event(envelope.decode())
    assert _reason(error) == "xml"


def _envelope_of_size(size: int) -> bytes:
    """A2's envelope grown to exactly `size` bytes with a filler element."""
    head = f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Filler>".encode()
    tail = f"</Filler><Encrypt><![CDATA[{A2_ENCRYPT}]]></Encrypt></xml>".encode()
    envelope = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(envelope) == size
    return envelope


def test_an_envelope_at_the_size_bound_is_read(crypto: CallbackCrypto) -> None:
    envelope = _envelope_of_size(MAX_XML_BYTES)
    assert crypto.open_message(A2_SIGNATURE, A2_TIMESTAMP, A2_NONCE, envelope) == A2_PLAINTEXT


@pytest.mark.parametrize("size", [MAX_XML_BYTES + 1, 10 * MAX_XML_BYTES])
def test_an_oversized_envelope_is_refused(crypto: CallbackCrypto, size: int) -> None:
    with pytest.raises(CallbackError) as error:
        crypto.open_message(A2_SIGNATURE, A2_TIMESTAMP, A2_NONCE, _envelope_of_size(size))
    assert _reason(error) == "xml"


def test_an_oversized_event_is_refused() -> None:
    event = "<xml><Content>" + "字" * (MAX_XML_BYTES // 3 + 1) + "</Content></xml>"
    with pytest.raises(CallbackError) as error:
        parse_event(event)
    assert _reason(error) == "xml"


@pytest.mark.parametrize(
    "envelope",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not xml", id="not-xml"),
        pytest.param(b"<xml><Encrypt>abc</Encrypt>", id="unclosed"),
        pytest.param(f"<xml><ToUserName>{CORP_ID}</ToUserName></xml>".encode(), id="no-encrypt"),
        pytest.param(b"<xml><Encrypt></Encrypt></xml>", id="empty-encrypt"),
        pytest.param(b"<xml><Encrypt><![CDATA[]]></Encrypt></xml>", id="empty-cdata"),
    ],
)
def test_a_malformed_envelope_is_refused(envelope: bytes) -> None:
    with pytest.raises(CallbackError) as error:
        envelope_fields(envelope)
    assert _reason(error) == "xml"


def test_an_envelope_without_to_user_name_still_gives_its_encrypt() -> None:
    assert envelope_fields(b"<xml><Encrypt>abc</Encrypt></xml>") == ("abc", None)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["", "a" * 33, "tok-en", "tok en", "токен", "QDG6eK\n", "QDG6eK="],
)
def test_a_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(CallbackError) as error:
        CallbackCrypto(token, ENCODING_AES_KEY, CORP_ID)
    assert _reason(error) == "key"


@pytest.mark.parametrize("token", ["a", "a" * 32, TOKEN])
def test_a_well_formed_token_is_taken(token: str) -> None:
    CallbackCrypto(token, ENCODING_AES_KEY, CORP_ID)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(ENCODING_AES_KEY[:-1], id="42-chars"),
        pytest.param(ENCODING_AES_KEY + "A", id="44-chars"),
        pytest.param(ENCODING_AES_KEY + "=", id="with-its-padding"),
        pytest.param("+" + ENCODING_AES_KEY[1:], id="plus"),
        pytest.param("/" + ENCODING_AES_KEY[1:], id="slash"),
        pytest.param(ENCODING_AES_KEY[:-1] + "密", id="non-ascii"),
        pytest.param(ENCODING_AES_KEY + "\n", id="trailing-newline"),
        pytest.param("", id="empty"),
    ],
)
def test_a_malformed_aes_key_is_refused(key: str) -> None:
    with pytest.raises(CallbackError) as error:
        CallbackCrypto(TOKEN, key, CORP_ID)
    assert _reason(error) == "key"


def test_the_patterns_match_what_the_constructor_takes() -> None:
    assert re.fullmatch(TOKEN_PATTERN, TOKEN)
    assert not re.fullmatch(TOKEN_PATTERN, "a" * 33)
    assert re.fullmatch(AES_KEY_PATTERN, ENCODING_AES_KEY)
    assert not re.fullmatch(AES_KEY_PATTERN, ENCODING_AES_KEY[:-1])


def test_the_repr_shows_no_secret(crypto: CallbackCrypto) -> None:
    text = repr(crypto)
    assert TOKEN not in text
    assert ENCODING_AES_KEY not in text
    assert AES_KEY_HEX not in text


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 26, id="pad-32"),  # 16 + 4 + 26 + 18 = 64: a whole extra block
        pytest.param("x" * 27, id="pad-31"),
        pytest.param("x" * 25, id="pad-1"),
        pytest.param("张三 <&> ]]>", id="cjk-and-markup"),
        pytest.param(A2_PLAINTEXT, id="A2"),
        pytest.param("y" * 40_000, id="large"),
    ],
)
def test_seal_then_open(crypto: CallbackCrypto, plaintext: str) -> None:
    envelope, signature = crypto.seal_message(plaintext, "1700000000", "nonce42")
    assert envelope_fields(envelope)[1] == CORP_ID
    assert crypto.open_message(signature, "1700000000", "nonce42", envelope) == plaintext


def test_sealing_twice_draws_a_new_random_prefix(crypto: CallbackCrypto) -> None:
    first, _ = crypto.seal_message("same", "1", "n")
    second, _ = crypto.seal_message("same", "1", "n")
    assert first != second


def test_a_default_random_prefix_is_16_ascii_characters(crypto: CallbackCrypto) -> None:
    plain = _raw_decrypt(base64.b64decode(crypto.encrypt("hello")))
    assert re.fullmatch(rb"[0-9a-f]{16}", plain[:16])


def test_a_sealed_message_is_refused_with_another_timestamp(crypto: CallbackCrypto) -> None:
    envelope, signature = crypto.seal_message("hello", "1700000000", "nonce42")
    with pytest.raises(CallbackError) as error:
        crypto.open_message(signature, "1700000001", "nonce42", envelope)
    assert _reason(error) == "signature"


def test_the_receive_id_is_escaped_in_the_envelope() -> None:
    crypto = CallbackCrypto(TOKEN, ENCODING_AES_KEY, "odd]]>id")
    envelope, signature = crypto.seal_message("hi", "1", "n")
    assert envelope_fields(envelope)[1] == "odd]]>id"
    assert crypto.open_message(signature, "1", "n", envelope) == "hi"


@pytest.mark.parametrize("random16", [b"", b"short", b"x" * 17])
def test_encrypt_wants_16_random_bytes(crypto: CallbackCrypto, random16: bytes) -> None:
    with pytest.raises(ValueError, match="16"):
        crypto.encrypt("hello", random16)


# -- events (wecom-api.md §6) -----------------------------------------------------------------
# Built from §6's header and field table, in doc/90970's style (text in CDATA, ChangeType both
# with and without it).

UPDATE_USER = """<xml>
<ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>
<FromUserName><![CDATA[sys]]></FromUserName>
<CreateTime>1403610513</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[change_contact]]></Event>
<ChangeType>update_user</ChangeType>
<UserID><![CDATA[zhangsan]]></UserID>
<NewUserID><![CDATA[zhangsan001]]></NewUserID>
<Name><![CDATA[张三]]></Name>
<Department><![CDATA[1,2,3]]></Department>
<MainDepartment>1</MainDepartment>
<IsLeaderInDept><![CDATA[1,0,0]]></IsLeaderInDept>
<DirectLeader><![CDATA[lisi,wangwu]]></DirectLeader>
<Position><![CDATA[产品经理]]></Position>
<Mobile>13800000000</Mobile>
<Gender>1</Gender>
<Email><![CDATA[zhangsan@gzdev.com]]></Email>
<Status>1</Status>
<Avatar><![CDATA[http://wx.qlogo.cn/mmopen/ajNVdqHZLLA3WJ6DSZUfiakYe37PKnQhBIeOQBO4c/0]]></Avatar>
<Alias><![CDATA[zhangsan]]></Alias>
<Telephone><![CDATA[020-123456]]></Telephone>
<Address><![CDATA[广州市]]></Address>
<ExtAttr>
<Item><Name><![CDATA[爱好]]></Name><Type>0</Type>
<Text><Value><![CDATA[旅游]]></Value></Text></Item>
<Item><Name><![CDATA[卡号]]></Name><Type>1</Type>
<Web><Title><![CDATA[企业微信]]></Title><Url><![CDATA[https://work.weixin.qq.com]]></Url></Web>
</Item>
</ExtAttr>
</xml>"""

DELETE_USER = """<xml>
<ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>
<FromUserName><![CDATA[sys]]></FromUserName>
<CreateTime>1403610513</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[change_contact]]></Event>
<ChangeType><![CDATA[delete_user]]></ChangeType>
<UserID><![CDATA[zhangsan]]></UserID>
</xml>"""

CREATE_PARTY = """<xml>
<ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>
<FromUserName><![CDATA[sys]]></FromUserName>
<CreateTime>1403610513</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[change_contact]]></Event>
<ChangeType>create_party</ChangeType>
<Id>2</Id>
<Name><![CDATA[张三的部门]]></Name>
<ParentId><![CDATA[1]]></ParentId>
<Order>1</Order>
</xml>"""

UNKNOWN_EVENT = """<xml>
<ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>
<FromUserName><![CDATA[sys]]></FromUserName>
<CreateTime>1700000000</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[some_future_event]]></Event>
<Mystery><![CDATA[42]]></Mystery>
<Nested><Inner>x</Inner></Nested>
</xml>"""


def test_update_user_with_a_new_user_id() -> None:
    event = parse_event(UPDATE_USER)
    assert (event.msg_type, event.event, event.change_type) == (
        "event",
        "change_contact",
        "update_user",
    )
    assert event.create_time == 1403610513
    assert event.user_id == "zhangsan"
    assert event.new_user_id == "zhangsan001"
    assert event.fields["Name"] == "张三"
    assert event.fields["Department"] == "1,2,3"
    assert event.fields["Mobile"] == "13800000000"
    assert event.fields["FromUserName"] == "sys"
    assert event.fields["ToUserName"] == CORP_ID


def test_update_user_leaves_out_the_nested_ext_attr_and_the_header() -> None:
    fields = parse_event(UPDATE_USER).fields
    assert "ExtAttr" not in fields
    assert {"MsgType", "Event", "ChangeType", "CreateTime"}.isdisjoint(fields)
    assert fields["Name"] == "张三"  # the top-level Name, not an ExtAttr item's


def test_delete_user() -> None:
    event = parse_event(DELETE_USER)
    assert event.change_type == "delete_user"
    assert event.user_id == "zhangsan"
    assert event.new_user_id is None
    assert event.party_id is None


def test_create_party() -> None:
    event = parse_event(CREATE_PARTY)
    assert event.change_type == "create_party"
    assert event.party_id == "2"
    assert event.user_id is None
    assert event.fields["Name"] == "张三的部门"
    assert event.fields["ParentId"] == "1"
    assert event.fields["Order"] == "1"


def test_an_unknown_event_is_still_parsed() -> None:
    event = parse_event(UNKNOWN_EVENT)
    assert event == WeComEvent(
        msg_type="event",
        event="some_future_event",
        change_type=None,
        create_time=1700000000,
        fields={
            "ToUserName": CORP_ID,
            "FromUserName": "sys",
            "Mystery": "42",
        },
    )


@pytest.mark.parametrize(
    "change_type",
    [
        pytest.param("<ChangeType>update_user</ChangeType>", id="plain"),
        pytest.param("<ChangeType><![CDATA[update_user]]></ChangeType>", id="cdata"),
        pytest.param("<ChangeType>\n  update_user\n</ChangeType>", id="plain-with-spaces"),
    ],
)
def test_change_type_with_and_without_cdata(change_type: str) -> None:
    xml = DELETE_USER.replace("<ChangeType><![CDATA[delete_user]]></ChangeType>", change_type)
    assert change_type in xml
    assert parse_event(xml).change_type == "update_user"


def test_the_a2_text_message_parses() -> None:
    event = parse_event(A2_PLAINTEXT)
    assert event.msg_type == "text"
    assert event.event is None
    assert event.create_time == 1409659813
    assert event.fields["Content"] == "hello"
    assert event.fields["MsgId"] == "4561255354251345929"


@pytest.mark.parametrize("create_time", ["", "abc", "-1", "１２３", "1" * 30])
def test_a_create_time_that_is_not_a_number_is_none(create_time: str) -> None:
    xml = f"<xml><CreateTime>{create_time}</CreateTime><MsgType>event</MsgType></xml>"
    assert parse_event(xml).create_time is None


def test_an_event_travels_sealed(crypto: CallbackCrypto) -> None:
    envelope, signature = crypto.seal_message(UPDATE_USER, "1403610513", "abc")
    event = parse_event(crypto.open_message(signature, "1403610513", "abc", envelope))
    assert (event.change_type, event.user_id, event.new_user_id) == (
        "update_user",
        "zhangsan",
        "zhangsan001",
    )


@pytest.mark.parametrize("xml", ["", "not xml", "<xml><a></xml>"])
def test_a_malformed_event_is_refused(xml: str) -> None:
    with pytest.raises(CallbackError) as error:
        parse_event(xml)
    assert _reason(error) == "xml"
