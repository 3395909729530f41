"""Admin: WeCom corporations. The console lists, connects, edits, disables and tests them; the
API under /admin/api/corps does the same in JSON for scripts. An app secret, and the app's
callback Token and EncodingAESKey, go in and never come out: no page and no JSON answer carries
them, the console and the API say only whether they are set.

`iam.services.corps` checks every value; the API's bodies are also held to the records of
`iam.records.corps`, whose schemas are the ones the OpenAPI document publishes."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from iam.admin.corps.api import (
    api_below_corp,
    api_create,
    api_list,
    api_show,
    api_test,
    api_update,
)
from iam.admin.corps.console import (
    add,
    callback,
    connection_test,
    corp_page,
    disable,
    edit,
    enable,
    list_page,
)
from iam.admin.corps.openapi import PATHS, SCHEMAS
from iam.admin.methods import by_method

__all__ = ["PATHS", "SCHEMAS", "routes"]

#: What the catch-all below the corporations answers (a function route is GET-only otherwise).
EVERY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]

routes: list[BaseRoute] = [
    Route("/corps", by_method(GET=list_page, POST=add), methods=["GET", "POST"]),
    Route("/corps/{corp_id}", by_method(GET=corp_page, POST=edit), methods=["GET", "POST"]),
    Route("/corps/{corp_id}/enable", enable, methods=["POST"]),
    Route("/corps/{corp_id}/disable", disable, methods=["POST"]),
    Route("/corps/{corp_id}/test", connection_test, methods=["POST"]),
    Route("/corps/{corp_id}/callback", callback, methods=["POST"]),
    Route("/api/corps", by_method(GET=api_list, POST=api_create), methods=["GET", "POST"]),
    Route(
        "/api/corps/{corp_id}",
        by_method(GET=api_show, PATCH=api_update),
        methods=["GET", "PATCH"],
    ),
    Route("/api/corps/{corp_id}/test", api_test, methods=["POST"]),
    Route("/api/corps/{corp_id}/{rest:path}", api_below_corp, methods=EVERY_METHOD),
]
