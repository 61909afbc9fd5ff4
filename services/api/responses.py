"""JSON in and out: prebuilt msgspec codecs and the contract's error shape."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from services.domain.errors import ValidationFailed
from services.domain.task_spec import from_msgspec_error

T = TypeVar("T")
NUL = "\x00"
NUL_REASON = "must not contain the NUL character (\\u0000)"
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


class ApiError(Exception):
    """An HTTP error with the contract's body: {"error": {"code", "message", "details"}}."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(value), status=status, content_type="application/json")


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    return json_response(
        {"error": {"code": code, "message": message, "details": details}}, status=status
    )


def decode_body(body: bytes, shape: type[T]) -> T:
    """Decodes a request body: 400 when it is not JSON, 422 naming the field when it is wrong."""
    decoder = _decoders.get(shape)
    if decoder is None:
        decoder = _decoders[shape] = msgspec.json.Decoder(shape)
    if not body.strip():
        raise ApiError(400, "malformed_body", "the request body is empty; send a JSON object")
    try:
        decoded: T = decoder.decode(body)
        # JSON can only carry U+0000 escaped; PostgreSQL's text and jsonb cannot store it.
        field = _nul_at(msgspec.json.decode(body)) if b"\\u0000" in body else None
    except msgspec.ValidationError as exc:
        raise from_msgspec_error(exc, shape=shape) from None
    except msgspec.DecodeError as exc:
        raise ApiError(
            400, "malformed_body", f"the request body is not valid JSON: {exc}"
        ) from None
    except RecursionError:
        # msgspec recurses per level of nesting, on the interpreter's stack.
        raise ApiError(
            400, "malformed_body", "the request body is JSON nested too deeply to read"
        ) from None
    if field is not None:
        raise ValidationFailed(field, NUL_REASON)
    return decoded


def _nul_at(value: Any) -> str | None:
    """The first field of a decoded JSON value whose text (a string or a key) holds U+0000."""
    # A loop, not recursion: the value may be nested as deep as the decoder goes.
    pending: list[tuple[Any, str]] = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str) and NUL in item:
            return path or "body"
        children: Iterable[tuple[Any, Any]] = ()
        if isinstance(item, list):
            children = enumerate(item)
        elif isinstance(item, dict):
            if any(NUL in key for key in item):
                return path or "body"
            children = item.items()
        found = [(child, f"{path}.{key}" if path else str(key)) for key, child in children]
        pending.extend(reversed(found))
    return None


def query_int(params: Any, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(name, f"must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValidationFailed(name, f"must be between {low} and {high}, got {value}")
    return value
