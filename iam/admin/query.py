"""An API request's query parameters, read as a record (`iam.records`): a refusal is a 422
naming the parameter, like a body's field."""

from __future__ import annotations

from typing import TypeVar

from starlette.requests import Request

from iam.records.base import Body, read

Q = TypeVar("Q", bound=Body)


def read_query(record: type[Q], request: Request) -> Q:
    """The query as `record`: no parameter it does not know (a typo is refused, not ignored),
    each of its type and in its bounds. A parameter given twice counts once (the first)."""
    return read(record, dict(request.query_params))
