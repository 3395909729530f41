"""Admin: users. Find a person, add one, edit their details, see their linked identities and
live sessions, link a WeCom member by hand, disable them, remove a link, sign them out of one
browser or everywhere; as console pages (`console.py`) and as the JSON API
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
    add_link_form,
    back_to_user,
    confirm_disable_page,
    confirm_end_session_page,
    confirm_end_sessions_page,
    confirm_remove_page,
    create_form,
    edit_form,
    end_session_form,
    end_sessions_form,
    new_user_page,
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
    Route("/users", by_method(GET=users_page, POST=create_form), methods=["GET", "POST"]),
    Route("/users/new", new_user_page, methods=["GET"]),
    Route("/users/{user_id}", user_page, methods=["GET"]),
    Route(
        "/users/{user_id}/edit",
        by_method(GET=back_to_user, POST=edit_form),
        methods=["GET", "POST"],
    ),
    Route(
        "/users/{user_id}/status",
        by_method(GET=back_to_user, POST=status_form),
        methods=["GET", "POST"],
    ),
    Route("/users/{user_id}/disable", confirm_disable_page, methods=["GET"]),
    Route(
        "/users/{user_id}/sessions/end",
        by_method(GET=confirm_end_sessions_page, POST=end_sessions_form),
        methods=["GET", "POST"],
    ),
    Route(
        "/users/{user_id}/sessions/{sid}/end",
        by_method(GET=confirm_end_session_page, POST=end_session_form),
        methods=["GET", "POST"],
    ),
    Route(
        "/users/{user_id}/links",
        by_method(GET=back_to_user, POST=add_link_form),
        methods=["GET", "POST"],
    ),
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
