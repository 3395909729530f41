"""Admin: audit (console pages and API)."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

#: OpenAPI paths (relative to /admin/api) and component schemas this area adds.
PATHS: dict[str, Any] = {}
SCHEMAS: dict[str, Any] = {}

routes: list[BaseRoute] = []
