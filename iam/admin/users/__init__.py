"""Admin: users. Find a person, see their linked identities and live sessions, disable them,
remove a link, sign them out everywhere; as console pages (`console.py`) and as the JSON API
(`api.py`, described in `openapi.py`, its records in `iam.records.users`)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from iam.admin.methods import by_method
from iam.admin.users.api import (
    EVERY_METHOD,
    api_below_user,
    api_end_sessions,
    api_list,
    api_patch,
    api_remove_link,
    api_show,
)
from iam.admin.users.console import (
    DONE,
    confirm_remove_page,
    end_sessions_form,
    remove_link_form,
    status_form,
    user_page,
    users_page,
)
from iam.admin.users.openapi import PATHS, SCHEMAS

__all__ = [
    "DONE",
    "PATHS",
    "SCHEMAS",
    "routes",
    "user_page",
]

routes: list[BaseRoute] = [
    Route("/users", users_page, methods=["GET"]),
    Route("/users/{user_id}", user_page, methods=["GET"]),
    Route("/users/{user_id}/status", status_form, methods=["POST"]),
    Route("/users/{user_id}/sessions/end", end_sessions_form, methods=["POST"]),
    Route(
        "/users/{user_id}/links/{link_id}/remove",
        by_method(GET=confirm_remove_page, POST=remove_link_form),
        methods=["GET", "POST"],
    ),
    Route("/api/users", api_list, methods=["GET"]),
    Route(
        "/api/users/{user_id}", by_method(GET=api_show, PATCH=api_patch), methods=["GET", "PATCH"]
    ),
    Route("/api/users/{user_id}/links/{link_id}", api_remove_link, methods=["DELETE"]),
    Route("/api/users/{user_id}/sessions", api_end_sessions, methods=["DELETE"]),
    Route("/api/users/{user_id}/{rest:path}", api_below_user, methods=EVERY_METHOD),
]
