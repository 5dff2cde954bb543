"""Field errors as the farm words them: JSON Schema errors naming the field and the value.

Used for payloads here and for request bodies by the status server: a schema may word a
value's problem itself in `x-error`; the value is put before it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from farm_worker.exceptions import FieldError
from farm_worker.redaction import SECRET_KEY

MASKED_VALUE = "(a secret)"  # what an error shows of a password's value

if TYPE_CHECKING:  # jsonschema is imported on first use: a CLI's --help need not load it
    import jsonschema

HTTP_URL = "http-url"  # a JSON Schema format: an http(s) URL that parses, with a host


def is_http_url(value: object) -> bool:
    """True for `http(s)://host[:port][/...]`; ValueError (from urlsplit) or False otherwise.
    Non-strings pass: their type is the schema's `type` to check."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    _ = parts.port  # ValueError for a port that is not a number in 0-65535
    return (parts.scheme in ("http", "https") and bool(parts.hostname)
            and not any(c.isspace() for c in value))


@functools.cache
def format_checker() -> jsonschema.FormatChecker:
    """The farm's formats (`http-url`) for JSON Schema's `format`."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    checker.checks(HTTP_URL, raises=ValueError)(is_http_url)
    return checker


class Validator:
    """A JSON Schema (2020-12) validator with the farm's formats, built on first use: the
    modules that hold schemas make them at import, and importing jsonschema costs a
    tenth of a second that `farm --help` need not pay."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema

    @functools.cached_property
    def built(self) -> jsonschema.Draft202012Validator:
        import jsonschema

        return jsonschema.Draft202012Validator(self.schema, format_checker=format_checker())

    def iter_errors(self, doc: Any) -> Iterator[jsonschema.ValidationError]:
        return self.built.iter_errors(doc)


def validator(schema: Mapping[str, Any]) -> Validator:
    """A validator of `schema` that also checks the farm's formats (`http-url`)."""
    return Validator(schema)


_ADDRESS = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\s\[\]]+)(?::(\d+))?")


def parse_address(text: str) -> tuple[str, int | None]:
    """`host`, `host:port` or `[v6addr]:port` -> (host, port; None where none is given).
    ValueError, saying which, for another form or a port outside 1-65535."""
    m = _ADDRESS.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{show(text)} is not host or host:port")
    port_text = m.group(2) or m.group(4)
    port = int(port_text) if port_text else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{show(text)} has port {port} outside 1-65535")
    return m.group(1) or m.group(3), port


def show(value: Any, limit: int = 60) -> str:
    """A value as it appears in an error message: JSON, cut to `limit` characters."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_errors(validator: Validator, doc: Any,
                  limit: int = 10) -> list[FieldError]:
    """What is wrong with `doc` by `validator`'s schema: each names its field and the bad
    value, in field order; empty when `doc` is valid. A schema may word a value's problem
    itself in `x-error` ("is not a cloud id"); the value is put before it."""
    errors = sorted(validator.iter_errors(doc),
                    key=lambda e: ([str(p) for p in e.absolute_path], str(e.validator)))
    return [schema_error(e) for e in errors[:limit]]


def schema_error(err: jsonschema.ValidationError) -> FieldError:
    """One jsonschema error as a FieldError: the field's dotted path and what is wrong."""
    where = _path(err.absolute_path)
    # jsonschema's stubs type these as unions with Unset; they are plain JSON data here
    kind: Any = err.validator
    expected: Any = err.validator_value
    instance: Any = err.instance
    schema: Any = err.schema
    if kind == "required":
        missing = next((k for k in expected if k not in instance), "?")
        return FieldError(_path([*err.absolute_path, missing]), "is required")
    if kind == "additionalProperties" and expected is False:
        allowed = set(schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in allowed)
        return FieldError(_path([*err.absolute_path, extra[0] if extra else "?"]),
                          f"unknown field; allowed: {', '.join(sorted(allowed))}")
    if "propertyNames" in err.absolute_schema_path:  # instance is the offending name
        return FieldError(_path([*err.absolute_path, instance]),
                          f"{show(instance)} is not a valid name ({expected})")
    # a password's value is never repeated in an error (it would reach logs and states)
    last = str(err.absolute_path[-1]) if err.absolute_path else ""
    value = MASKED_VALUE if SECRET_KEY.search(last) and isinstance(instance, str) \
        else show(instance)
    if isinstance(schema, Mapping) and "x-error" in schema:
        return FieldError(where, f"{value} {schema['x-error']}")
    if kind == "enum":
        return FieldError(where, f"{value} is not one of {', '.join(map(str, expected))}")
    if kind == "pattern":
        return FieldError(where, f"{value} contains a line break or control character")
    if kind == "type":
        return FieldError(where, f"{value} is not of type {expected}")
    if kind == "oneOf":
        return FieldError(where, f"{value} is not a string, number, boolean or list of them "
                                 "(one line, at most 4096 characters)")
    if kind in ("maxLength", "minLength", "maxItems", "maxProperties"):
        size = len(instance)
        shown = value if value == MASKED_VALUE else show(instance, 40)
        return FieldError(where, f"{shown} has size {size}; "
                                 f"{kind} is {expected}")
    if kind == "format":
        return FieldError(where, f"{value} is not a valid {expected}")
    if kind in ("minimum", "maximum"):
        return FieldError(where, f"{value} is out of range; {kind} is {expected}")
    return FieldError(where, f"{value}: {err.message}"[:300])
