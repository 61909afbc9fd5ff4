"""Webhook rules, pure: what a subscription may say, the signature, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid

import pytest

from services.domain.errors import ValidationFailed
from services.domain.webhooks import WebhookInput, check_webhook, retry_delay, signature
from services.engine.webhook_cooldown import Cooldowns

KNOWN = ("TaskCreated", "ExecutionCompleted")


def given(**changes: object) -> WebhookInput:
    fields: dict[str, object] = {
        "url": "https://hooks.example.test/deployx?team=ops",
        "event_types": ["ExecutionCompleted", "TaskCreated", "ExecutionCompleted"],
        "secret": "0123456789abcdef",
    }
    return WebhookInput(**(fields | changes))  # type: ignore[arg-type]


def test_a_good_subscription_is_kept_with_its_types_once_each() -> None:
    task = uuid.uuid4()
    spec = check_webhook(given(task_id=task), KNOWN)
    assert spec.event_types == ["ExecutionCompleted", "TaskCreated"]
    assert spec.task_id == str(task) and spec.url.endswith("?team=ops")


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"url": "file:///etc/passwd"}, "url", "http:// or https://"),
        ({"url": "https://a b.test/"}, "url", "spaces"),
        ({"url": "https://x.test/\x00"}, "url", "control"),
        ({"url": "https://me:pw@x.test/"}, "url", "user or password"),
        ({"url": "https://x.test:70000/"}, "url", "not a URL"),
        ({"url": "https:///nohost"}, "url", "host"),
        ({"url": "https://x.test/#part"}, "url", "fragment"),
        ({"event_types": ["TaskCreated", "Nope"]}, "event_types.1", "not an event type"),
        ({"secret": "0123456789abcde\x00"}, "secret", "printable"),
    ],
)
def test_a_bad_field_is_named_with_the_reason(
    changes: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_webhook(given(**changes), KNOWN)
    assert refused.value.field == field and reason in refused.value.reason


def test_the_signature_is_the_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"id": "x", "type": "TaskCreated"}'
    digest = hmac.new(b"0123456789abcdef", body, hashlib.sha256).hexdigest()
    assert signature("0123456789abcdef", body) == f"sha256={digest}"
    assert signature("0123456789abcdef", body + b" ") != f"sha256={digest}"


def test_retries_double_with_jitter_up_to_the_limit_and_span_a_day() -> None:
    rng = random.Random(1)
    delays = [retry_delay(attempt, 1.0, 3600.0, rng) for attempt in range(1, 60)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(3600.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered: no two senders in step
    waited, attempts = 0.0, 0
    while waited < 86_400:
        attempts += 1
        waited += retry_delay(attempts, 1.0, 3600.0, rng)
    assert 25 < attempts < 60  # about 35 tries in the day a delivery is retried


def test_a_failing_subscription_rests_one_round_at_a_time_and_a_success_ends_it() -> None:
    now = [100.0]
    cooldowns = Cooldowns(first=1.0, limit=3600.0, clock=lambda: now[0])
    cooldowns.failed("dead", started=99.9)
    assert cooldowns.resting() == ["dead"]
    # The rest of that round (begun before the pause) fails too: the pause stays as it is.
    for _ in range(7):
        cooldowns.failed("dead", started=99.95)
    now[0] = 101.01
    assert cooldowns.resting() == []
    cooldowns.failed("dead", started=101.02)  # the next round: a longer pause (1 to 2 s)
    now[0] = 102.0
    assert cooldowns.resting() == ["dead"]
    cooldowns.succeeded("dead")
    assert cooldowns.resting() == []
