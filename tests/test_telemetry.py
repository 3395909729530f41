"""iam/telemetry.py: a request id on every answer and log line, an access log without query
strings, and request metrics labelled by route template (not by path)."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import ISSUER, PHONE
from support.world import World

from iam.admin import home, users
from iam.flows import dispatch
from iam.logs import RequestIdFilter
from iam.telemetry import UNMATCHED, route_templates

pytestmark = pytest.mark.usefixtures("reused_signing_key")

GENERATED_ID = re.compile(r"^[0-9a-f]{24}$")


@pytest.fixture
def stamped(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog, with each record stamped with the request id as the server's log handler does
    (`iam.logs.log_config` puts `RequestIdFilter` on its handler)."""
    caplog.set_level(logging.DEBUG)
    stamp = RequestIdFilter()
    caplog.handler.addFilter(stamp)
    yield caplog
    caplog.handler.removeFilter(stamp)


def scrape(client: TestClient) -> str:
    """GET /metrics as the scraper does, from a loopback address (`IAM_METRICS_ALLOW_CIDRS`)."""
    scraper = TestClient(client.app, base_url=ISSUER, client=("127.0.0.1", 50000))
    answer = scraper.get("/metrics")
    assert answer.status_code == 200
    return answer.text


def sample(client: TestClient, name: str, **labels: str) -> float:
    """The value of one sample of GET /metrics (0 when absent)."""
    text = scrape(client)
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return 0.0


def request_routes(client: TestClient) -> set[str]:
    text = scrape(client)
    return {
        found.labels["route"]
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == "iam_http_requests_total"
    }


# --- the request id ---


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/login"), ("GET", "/no/such/page"), ("POST", "/token")],
)
def test_every_answer_carries_a_request_id(client: TestClient, method: str, path: str) -> None:
    first = client.request(method, path)
    second = client.request(method, path)
    assert GENERATED_ID.match(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_answers_refused_by_the_address_guard_carry_one_too(app) -> None:
    with TestClient(app, base_url=ISSUER, client=("203.0.113.9", 5000)) as outsider:
        refused = outsider.get("/admin/")
    assert refused.status_code == 403
    assert GENERATED_ID.match(refused.headers["x-request-id"])


def test_a_plain_incoming_id_is_kept(client: TestClient) -> None:
    """The load balancer's id lets one request be followed through both logs."""
    for incoming in ("lb-0123abcd", "0f8fad5b-d9cb-469f-a165-70867728950e", "a.b:c_d-e"):
        answer = client.get("/healthz", headers={"x-request-id": incoming})
        assert answer.headers["x-request-id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["has some spaces", "x" * 200, "short", "quote\"'<script>", "line\tbreak-0123", "é" * 10],
)
def test_a_malformed_incoming_id_is_replaced(client: TestClient, incoming: str) -> None:
    """Whatever a client sends ends up in log lines: only plain tokens are kept."""
    answer = client.get("/healthz", headers={"x-request-id": incoming.encode("latin-1")})
    assert GENERATED_ID.match(answer.headers["x-request-id"]), answer.headers["x-request-id"]


def test_an_id_with_a_line_break_is_replaced(app) -> None:
    """Sent raw (the HTTP client would refuse to): a newline must not split a log line."""
    scope_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", b"abcdefgh\nforged line")]
    with TestClient(app, base_url=ISSUER) as client:
        answer = client.get("/healthz", headers=scope_headers)
    assert GENERATED_ID.match(answer.headers["x-request-id"])


def test_log_lines_of_a_request_carry_its_id(
    front: Front, world: World, stamped: pytest.LogCaptureFixture
) -> None:
    """The access line, and a line written in a worker thread (the SMS sender's)."""
    answer = front.send_code(PHONE)
    request_id = answer.headers["x-request-id"]
    sms_lines = [r for r in stamped.records if r.name == "iam.sms"]
    assert sms_lines and sms_lines[-1].request_id == request_id
    access = [r for r in stamped.records if r.name == "iam.access"]
    assert access[-1].request_id == request_id
    assert '"POST /login/otp" 303' in access[-1].getMessage()
    logging.getLogger("iam").info("between requests")
    assert stamped.records[-1].request_id == "-"


def test_the_access_line_has_no_query_string(
    client: TestClient, stamped: pytest.LogCaptureFixture
) -> None:
    """Queries carry authorization codes and states."""
    answer = client.get("/callback/wecom/x?code=SECRETCODE&state=S")
    assert answer.status_code < 500
    access = [r.getMessage() for r in stamped.records if r.name == "iam.access"]
    assert any(f'"GET /callback/wecom/x" {answer.status_code}' in line for line in access)
    server_side = [r for r in stamped.records if not r.name.startswith(("httpx", "httpcore"))]
    assert server_side
    for record in server_side:
        assert "SECRETCODE" not in record.getMessage(), record.name


#: A newline, a carriage return, NUL, ESC, a tab and DEL, percent-encoded in the request line.
CONTROL_PATH = "/a%0Ab%0Dc%00d%1Be%09f%7Fg"
STARTS_A_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def test_control_characters_in_the_path_stay_on_one_text_access_line(
    client: TestClient, server_log: Callable[[str], io.StringIO]
) -> None:
    """Otherwise a request could write lines of its own making into the log."""
    stream = server_log("text")
    status = client.get(CONTROL_PATH).status_code
    text = stream.getvalue()
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    assert all(STARTS_A_LINE.match(line) for line in lines), lines
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", text), repr(text)
    (access,) = [line for line in lines if " iam.access " in line]
    assert f'"GET /a\\x0ab\\x0dc\\x00d\\x1be\\x09f\\x7fg" {status}' in access, access


def test_a_backslash_in_the_path_cannot_pass_for_an_escape(
    client: TestClient, server_log: Callable[[str], io.StringIO]
) -> None:
    stream = server_log("text")
    client.get("/a\\x0ab")
    (access,) = [line for line in stream.getvalue().splitlines() if " iam.access " in line]
    assert "/a\\x5cx0ab" in access, access


def test_control_characters_in_the_path_stay_on_one_json_access_line(
    client: TestClient, server_log: Callable[[str], io.StringIO]
) -> None:
    stream = server_log("json")
    status = client.get(CONTROL_PATH + "%C2%85%E2%80%A8").status_code
    text = stream.getvalue()
    assert len(text.splitlines()) == text.count("\n")  # no line break but the newlines
    entries = [json.loads(line) for line in text.splitlines()]
    (access,) = [entry for entry in entries if entry["logger"] == "iam.access"]
    assert f'"GET /a\nb\rc\x00d\x1be\tf\x7fg\x85\u2028" {status}' in access["message"]


def test_a_server_error_carries_the_request_id_on_its_answer_and_log_line(
    app, stamped: pytest.LogCaptureFixture
) -> None:
    """A 500 is when the id is needed most: to find the traceback from what the user saw."""

    class BrokenStore:
        def __call__(self):
            raise RuntimeError("the database fell over")

    with TestClient(app, base_url=ISSUER, raise_server_exceptions=False) as client:
        app.state.store = BrokenStore()
        answer = client.get("/login")
    assert answer.status_code == 500
    traceback_lines = [r for r in stamped.records if r.exc_info and r.name == "iam"]
    assert traceback_lines, [r.getMessage() for r in stamped.records]
    access = [r for r in stamped.records if r.name == "iam.access"][-1]
    assert '"GET /login" 500' in access.getMessage()
    assert traceback_lines[-1].request_id == access.request_id
    assert answer.headers.get("x-request-id") == access.request_id


# --- route templates and request metrics ---


def test_route_templates_name_endpoints_through_the_admin_mount(app) -> None:
    templates = route_templates(app.routes)
    assert templates[dispatch.resume] == "/flow/{flow_id}"
    assert templates[home.login] == "/admin/login"
    assert templates[home.home] == "/admin/"
    assert templates[users.user_page] == "/admin/users/{user_id}"
    assert "/static" in templates.values()


def test_requests_are_counted_by_route_template(client: TestClient) -> None:
    labels = {"route": "/flow/{flow_id}", "method": "GET"}
    status = str(client.get("/flow/abc").status_code)
    before = sample(client, "iam_http_requests_total", status=status, **labels)
    timed = sample(client, "iam_http_request_duration_seconds_count", **labels)
    client.get("/flow/def")
    client.get("/flow/ghi")
    assert sample(client, "iam_http_requests_total", status=status, **labels) == before + 2
    assert sample(client, "iam_http_request_duration_seconds_count", **labels) == timed + 2
    routes = request_routes(client)
    assert not any("abc" in route or "def" in route for route in routes)


def test_admin_requests_are_counted_by_their_full_template(app) -> None:
    with TestClient(app, base_url=ISSUER, client=("127.0.0.1", 5000)) as console:
        assert console.get("/admin/login").status_code == 200
        assert "/admin/login" in request_routes(console)


def test_unknown_paths_under_the_admin_mount_are_logged_and_counted(
    app, stamped: pytest.LogCaptureFixture
) -> None:
    """The mount's router is the endpoint there: it must not break the access line."""
    labels = {"route": UNMATCHED, "method": "GET", "status": "404"}
    with TestClient(app, base_url=ISSUER, client=("127.0.0.1", 5000)) as console:
        before = sample(console, "iam_http_requests_total", **labels)
        assert console.get("/admin/no/such/page").status_code == 404
        assert sample(console, "iam_http_requests_total", **labels) == before + 1
    access = [r.getMessage() for r in stamped.records if r.name == "iam.access"]
    assert any('"GET /admin/no/such/page" 404' in line for line in access), access


def test_unknown_paths_share_one_route_label(client: TestClient) -> None:
    """Scanners must not make a new series per path they try."""
    labels = {"route": UNMATCHED, "method": "GET", "status": "404"}
    before = sample(client, "iam_http_requests_total", **labels)
    assert client.get("/wp-admin/setup-config.php").status_code == 404
    assert client.get("/.env").status_code == 404
    assert sample(client, "iam_http_requests_total", **labels) == before + 2
    assert not any("wp-admin" in route or ".env" in route for route in request_routes(client))
