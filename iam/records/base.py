"""What every record shares: the base classes, the field types, reading a body, and turning the
records into the OpenAPI document's schemas."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, TypeVar

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, SkipJsonSchema, models_json_schema

from iam.errors import ValidationError

REF_TEMPLATE = "#/components/schemas/{model}"


class Record(BaseModel):
    """A resource as the admin API and `iam ... --json` show it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_row(cls, row: object, **given: Any) -> Self:
        """The record of a model row: each field is the row's attribute of the same name,
        except those `given` (computed, or named otherwise in the row)."""
        read = {name: getattr(row, name) for name in cls.model_fields if name not in given}
        return cls(**read, **given)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Body(BaseModel):
    """A request body (or a query): every field of the declared type (no "600" for 600), none
    unknown, none null (a field is given with its type or left out; null is refused naming the
    field, not read as "left out"). Patterns use Python's `re`, so the document's patterns are
    the ones checked."""

    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")

    @model_validator(mode="before")
    @classmethod
    def _nothing_null(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                if value is None and name in cls.model_fields:
                    raise ValidationError(name, f"{name} must not be null.")
        return data

    def sent(self) -> dict[str, Any]:
        """The fields the body had, by name (what a PATCH changes)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


B = TypeVar("B", bound=Body)


def rfc3339(moment: datetime) -> str:
    """A stored (naive UTC) time as RFC 3339, to the second, with `Z`."""
    return moment.replace(tzinfo=UTC, microsecond=0).isoformat().replace("+00:00", "Z")


#: A moment, shown as RFC 3339 UTC to the second ("2026-12-06T04:09:48Z").
Timestamp = Annotated[
    datetime,
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _integral(value: Any) -> Any:
    """JSON Schema counts 600.0 as an integer: read it as 600 (and only such floats)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer field of a body (600 or 600.0; never "600" or true).
WholeNumber = Annotated[int, BeforeValidator(_integral)]


def _text(value: Any) -> Any:
    """Text any database takes: a lone surrogate (valid JSON, "\\ud800") is not."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("not text (a lone surrogate)") from None
    return value


#: A string field of a body.
Text = Annotated[str, BeforeValidator(_text)]

#: The type of a field a body may leave out (`X | Absent = None`): the schema shows only `X`.
Absent = SkipJsonSchema[None]

_DECIMAL = re.compile(r"-?[0-9]{1,20}", re.ASCII)


def _query_integer(value: Any) -> Any:
    """A query parameter is text: a plain decimal integer ("50", never "5e1" or " 50")."""
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise ValueError("not an integer.")
        return int(value)
    return value


#: Reads an integer query parameter: `Annotated[int, Field(ge=.., le=..), FROM_TEXT]` (the
#: bounds stand before it, or the schema would not say them).
FROM_TEXT = BeforeValidator(_query_integer)


def documented(description: str | None = None, **keywords: Any) -> Any:
    """A field's description and the JSON Schema keywords that state its rule in the document
    (`pattern`, `maxLength`, ...): a validator beside it checks the rule."""
    return pydantic.Field(description=description, json_schema_extra=keywords)


def by_the_service(check: Callable[[Any], Any]) -> AfterValidator:
    """A field validator from a service's check: the service's rule and message (its
    `ValidationError` becomes the field's); the value stays as sent."""

    def validate(value: Any) -> Any:
        try:
            check(value)
        except ValidationError as error:
            raise ValueError(str(error)) from None
        return value

    return AfterValidator(validate)


def read(model: type[B], data: dict[str, Any]) -> B:
    """The body as `model`; else `ValidationError` naming the first field at fault."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first["loc"] else "body"
        raise ValidationError(field, _message(field, first)) from None


def _message(field: str, error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return f"{field} is required."
    if kind == "extra_forbidden":
        return f"Unknown field {field!r}."
    if kind == "value_error":
        return f"{field}: {error['ctx']['error']}"
    return f"{field}: {error['msg']}."


class _Quiet(GenerateJsonSchema):
    """Schemas without pydantic's generated titles (the names say it)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: Any) -> Any:
        """A field whose default is None means "not sent" (bodies never take null)."""
        if schema.get("default", ...) is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


Mode = Literal["validation", "serialization"]


def schemas(models: Iterable[tuple[type[BaseModel], Mode]]) -> dict[str, Any]:
    """The OpenAPI document's `components.schemas` for these records (request bodies are read
    as validated, answers as serialised)."""
    _, document = models_json_schema(
        list(models), ref_template=REF_TEMPLATE, schema_generator=_Quiet
    )
    found: dict[str, Any] = document.get("$defs", {})
    for schema in found.values():
        schema.pop("title", None)
    return found


def answers(names: Sequence[type[BaseModel]]) -> list[tuple[type[BaseModel], Mode]]:
    return [(model, "serialization") for model in names]


def bodies(names: Sequence[type[BaseModel]]) -> list[tuple[type[BaseModel], Mode]]:
    return [(model, "validation") for model in names]
