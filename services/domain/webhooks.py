"""Webhook rules: what a subscription may say, how a body is signed, when to try again."""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid
from collections.abc import Collection
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from services.domain.errors import ValidationFailed

MAX_URL = 2048
# A secret is an HMAC key: shorter than 16 characters it is guessable, and nobody needs 256.
SECRET_MIN, SECRET_MAX = 16, 256
MAX_EVENT_TYPES = 64
SIGNATURE_HEADER = "X-DeployX-Signature"
EVENT_HEADER = "X-DeployX-Event"
DELIVERY_HEADER = "X-DeployX-Delivery"
TEST_EVENT = "WebhookTest"

EventTypeName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class WebhookInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/webhooks."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL)]
    event_types: Annotated[
        list[EventTypeName], msgspec.Meta(min_length=1, max_length=MAX_EVENT_TYPES)
    ]
    secret: Annotated[str, msgspec.Meta(min_length=SECRET_MIN, max_length=SECRET_MAX)]
    task_id: uuid.UUID | None = None


class WebhookSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription as it is stored: checked, event types without repeats."""

    url: str
    event_types: list[str]
    secret: str
    task_id: str | None


def check_webhook(given: WebhookInput, known_types: Collection[str]) -> WebhookSpec:
    """The subscription to store, or ValidationFailed naming the field and why."""
    check_url(given.url)
    for index, name in enumerate(given.event_types):
        if name not in known_types:
            raise ValidationFailed(
                f"event_types.{index}",
                f"{name!r} is not an event type; known: {', '.join(sorted(known_types))}",
            )
    if not given.secret.isprintable():
        raise ValidationFailed("secret", "must be printable characters only")
    return WebhookSpec(
        url=given.url,
        event_types=list(dict.fromkeys(given.event_types)),
        secret=given.secret,
        task_id=str(given.task_id) if given.task_id is not None else None,
    )


def check_url(url: str) -> None:
    if not url.isprintable() or any(char.isspace() for char in url):
        raise ValidationFailed("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValidationFailed("url", f"is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationFailed("url", "must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValidationFailed("url", "must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValidationFailed(
            "url",
            "must not carry a user or password (it is shown in listings); "
            "the receiver checks the signature instead",
        )
    if parts.fragment:
        raise ValidationFailed("url", "must not have a #fragment (it is never sent)")


def signature(secret: str, body: bytes) -> str:
    """The X-DeployX-Signature of body: sha256=<hex HMAC-SHA256 of the exact bytes>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay(
    attempts: int, first: float, limit: float, rng: random.Random | None = None
) -> float:
    """Seconds until the next try after `attempts` failed ones: doubling from first up to
    limit, each drawn from its upper half (jitter), so that receivers coming back from an
    outage are not hit by every sender in the same second."""
    ceiling = min(limit, first * 2.0 ** min(attempts - 1, 62))
    draw: float = (rng or random).random()
    return ceiling / 2 + draw * ceiling / 2
