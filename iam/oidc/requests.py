"""Immutable snapshots of Starlette requests in the shape Authlib's sync server reads.

The async edge reads the body first (Authlib calls `create_oauth2_request` synchronously), and
the URI is rebuilt on the configured issuer, so a TLS-terminating proxy does not matter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlencode

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request

from iam.edge import has_control

MAX_FORM_FIELDS = 50
FORM_URLENCODED = "application/x-www-form-urlencoded"

Pairs = Sequence[tuple[str, str]]


class SnapshotPayload(OAuth2Payload):
    """Query and form parameters together; the first value of a repeated name wins."""

    def __init__(self, query: Pairs, form: Pairs) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in (*query, *form):
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class SnapshotRequest(OAuth2Request):
    """An OAuth2Request built from already-read parts; safe to hand to a worker thread."""

    def __init__(self, method: str, uri: str, headers: Headers, query: Pairs, form: Pairs) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._args = _first_values(query)
        self._form = _first_values(form)
        self.payload = SnapshotPayload(query, form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


def _first_values(pairs: Pairs) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in pairs:
        values.setdefault(key, value)
    return values


async def snapshot(request: Request, issuer: str, *, read_form: bool = True) -> SnapshotRequest:
    """Read the body (for POST forms) and freeze the request for Authlib."""
    form: list[tuple[str, str]] = []
    if read_form and request.method == "POST":
        form = await form_pairs(request)
    raw_query = request.scope["query_string"].decode("latin-1")
    return from_parts(
        request.method,
        issuer,
        request.url.path,
        request.query_params.multi_items(),
        form,
        request.headers,
        raw_query=raw_query,
    )


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    """The posted fields. A urlencoded body (what OAuth clients send) is split here: the
    general form parser costs several times more on the token endpoint's hot path."""
    if request.headers.get("content-type", "").split(";")[0].strip() != FORM_URLENCODED:
        data = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        return [(key, value) for key, value in data.multi_items() if isinstance(value, str)]
    body = await request.body()
    try:
        return parse_qsl(
            body.decode("utf-8", "replace"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
            encoding="utf-8",
            errors="replace",
        )
    except ValueError:
        raise HTTPException(
            400, f"Too many fields. Maximum number of fields is {MAX_FORM_FIELDS}."
        ) from None


def from_parts(
    method: str,
    issuer: str,
    path: str,
    query: Pairs,
    form: Pairs = (),
    headers: Headers | Mapping[str, str] | None = None,
    *,
    raw_query: str | None = None,
) -> SnapshotRequest:
    """A request from stored parts, e.g. a pending authorization resumed after login.
    (`raw_query`: the query as received, when there is one, instead of encoding it again.)"""
    if raw_query is None:
        raw_query = urlencode(list(query))
    uri = issuer + path + ("?" + raw_query if raw_query else "")
    if not isinstance(headers, Headers):
        headers = Headers(headers=dict(headers or {}))
    return SnapshotRequest(method, uri, headers, list(query), list(form))


def readable_basic_credentials(headers: Mapping[str, str]) -> bool:
    """Whether HTTP Basic credentials, if sent, read as a client id and secret (RFC 6749 2.3.1)
    without a control character. Authlib reads them, but raises on base64 of bytes that are not
    UTF-8, and percent-decodes them after the edge has looked (`%00` becomes a NUL)."""
    try:
        client_id, secret = extract_basic_authorization(headers)
    except UnicodeDecodeError:
        return False
    return not any(has_control(part) for part in (client_id, secret) if part)
