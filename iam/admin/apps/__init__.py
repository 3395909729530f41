"""Admin: apps (relying parties). The console lists, registers, edits and deletes them and
rotates their secrets; the API under /admin/api/apps does the same in JSON.

`iam.services.clients` checks every value. The API also holds each body to the shape its
OpenAPI description promises (the patterns below), so that a request the description calls
valid is one the service takes, and one it calls invalid is refused with 422."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from iam.admin.apps.api import (
    api_below_app,
    api_create,
    api_delete,
    api_get,
    api_list,
    api_retire,
    api_rotate,
    api_update,
)
from iam.admin.apps.console import (
    app_page,
    apps_page,
    confirm_delete,
    create_app,
    delete_app,
    retire_secret,
    rotate_secret,
    update_app,
)
from iam.admin.apps.openapi import PATHS, SCHEMAS
from iam.admin.methods import by_method

__all__ = ["PATHS", "SCHEMAS", "routes"]

routes: list[BaseRoute] = [
    Route("/apps", apps_page, methods=["GET"]),
    Route("/apps", create_app, methods=["POST"]),
    Route("/apps/{client_id}", app_page, methods=["GET"]),
    Route("/apps/{client_id}", update_app, methods=["POST"]),
    Route("/apps/{client_id}/rotate", rotate_secret, methods=["POST"]),
    Route("/apps/{client_id}/retire", retire_secret, methods=["POST"]),
    Route("/apps/{client_id}/delete", confirm_delete, methods=["GET"]),
    Route("/apps/{client_id}/delete", delete_app, methods=["POST"]),
    Route("/api/apps", by_method(GET=api_list, POST=api_create), methods=["GET", "POST"]),
    Route(
        "/api/apps/{client_id}",
        by_method(GET=api_get, PATCH=api_update, DELETE=api_delete),
        methods=["GET", "PATCH", "DELETE"],
    ),
    Route("/api/apps/{client_id}/secret", api_rotate, methods=["POST"]),
    Route("/api/apps/{client_id}/previous-secret", api_retire, methods=["DELETE"]),
    Route("/api/apps/{client_id}/{rest:path}", api_below_app),
]
