"""Webhooks (issue 13): `deployx webhooks` delivers each matching event signed, at least once,
in log order per task, retrying with backoff, and a slow or dead endpoint delays no one else.
The receivers are real HTTP servers on 127.0.0.1 (tests/e2e/webhook_receiver.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.infra.embedded import free_port
from tests.e2e.api import TASKS, create_task
from tests.e2e.processes import ServiceProcess, Services, wait_until
from tests.e2e.webhook_receiver import HANG, Received, Receiver, running_receiver
from tests.stack import Client, Stack

SECRET = "s3cret-for-the-receiver-only"
FAST_RETRIES = {
    "DEPLOYX_WEBHOOK_FIRST_RETRY_SECONDS": "0.1",
    "DEPLOYX_WEBHOOK_MAX_RETRY_SECONDS": "0.4",
    "DEPLOYX_WEBHOOK_TIMEOUT_SECONDS": "1",
}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


@pytest.fixture
async def admin(stack: Stack) -> Client:
    return await stack.client("hooks-admin", "admin")


def sender(services: Services, name: str = "webhooks", **env: str) -> ServiceProcess:
    services.env.update(FAST_RETRIES | env)
    return services.start(name, "webhooks")


async def subscribe(admin: Client, url: str, *types: str, **more: Any) -> dict[str, Any]:
    body = {"url": url, "event_types": list(types), "secret": SECRET} | more
    status, webhook = await admin.post("/api/webhooks", body)
    assert status == 201, webhook
    return webhook  # type: ignore[no-any-return]


async def arrive(
    receiver: Receiver, path: str, count: int, watched: list[ServiceProcess], timeout: float = 15
) -> list[Received]:
    async def enough() -> bool:
        return len(receiver.answered(path)) >= count

    await wait_until(enough, timeout, f"{count} deliveries answered 200 at /{path}", watched)
    return receiver.answered(path)


async def recorded(
    admin: Client, hook: dict[str, Any], count: int, watched: list[ServiceProcess]
) -> list[dict[str, Any]]:
    """The subscription's deliveries once `count` are recorded delivered (the receiver has its
    answer a moment before the sender has written it down)."""
    path = f"/api/webhooks/{hook['id']}/deliveries"

    async def done() -> bool:
        _, page = await admin.get(f"{path}?status=delivered")
        return bool(page["total"] >= count)

    await wait_until(done, 15, f"{count} deliveries recorded", watched)
    status, page = await admin.get(path)
    assert status == 200, page
    return page["items"]  # type: ignore[no-any-return]


async def log_of(admin: Client, task_id: str) -> list[dict[str, Any]]:
    status, history = await admin.get(f"{TASKS}/{task_id}/events")
    assert status == 200, history
    return history["items"]  # type: ignore[no-any-return]


async def test_a_delivery_is_the_envelope_signed_with_the_secret(
    stack: Stack, services: Services, receiver: Receiver, admin: Client
) -> None:
    webhooks = sender(services)
    mine = await create_task(admin)
    hook = await subscribe(
        admin, receiver.url("ok"), "TaskPaused", "TaskCreated", task_id=mine["id"]
    )
    assert "secret" not in hook
    await create_task(admin)  # another task: not for this subscription
    assert (await admin.post(f"{TASKS}/{mine['id']}/pause"))[0] == 200
    [got] = await arrive(receiver, "ok", 1, [webhooks])
    [paused] = [e for e in await log_of(admin, mine["id"]) if e["type"] == "TaskPaused"]

    expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-DeployX-Signature"] == f"sha256={expected}"
    assert got.headers["X-DeployX-Event"] == "TaskPaused"
    assert got.delivery == paused["id"]
    assert got.headers["Content-Type"] == "application/json"
    assert json.loads(got.body) == paused  # the envelope, as NATS and the events API carry it
    [delivery] = await recorded(admin, hook, 1, [webhooks])
    assert (delivery["status"], delivery["event_id"], delivery["task_id"]) == (
        "delivered", paused["id"], mine["id"],
    )  # fmt: skip
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["duration_ms"] > 0


async def test_a_500_is_retried_with_the_same_delivery_id_and_body(
    stack: Stack, services: Services, receiver: Receiver, admin: Client
) -> None:
    receiver.plans["flaky"] = lambda _delivery, earlier: 500 if not earlier else 200
    webhooks = sender(services)
    hook = await subscribe(admin, receiver.url("flaky"), "TaskCreated")
    task = await create_task(admin)
    await arrive(receiver, "flaky", 1, [webhooks])
    first, second = receiver.at("flaky")
    assert (first.status, second.status) == (500, 200)
    assert first.delivery == second.delivery == (await log_of(admin, task["id"]))[0]["id"]
    assert first.body == second.body
    assert first.headers["X-DeployX-Signature"] == second.headers["X-DeployX-Signature"]
    [delivery] = await recorded(admin, hook, 1, [webhooks])
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 200]
    assert attempts[0]["error"] == "HTTP 500: receiver says no"


async def test_deliveries_of_a_task_arrive_in_log_order_under_retries_and_replicas(
    stack: Stack, services: Services, receiver: Receiver, admin: Client
) -> None:
    chance = random.Random(13)
    receiver.plans["order"] = lambda _d, _e: 500 if chance.random() < 0.4 else 200
    replicas = [sender(services, "webhooks-1"), sender(services, "webhooks-2")]
    await subscribe(admin, receiver.url("order"), "TaskCreated", "TaskPaused", "TaskResumed")
    tasks = [await create_task(admin) for _ in range(6)]
    for _ in range(3):
        for task in tasks:
            assert (await admin.post(f"{TASKS}/{task['id']}/pause"))[0] == 200
            assert (await admin.post(f"{TASKS}/{task['id']}/resume"))[0] == 200
    await arrive(receiver, "order", 6 * 7, replicas, timeout=60)

    positions: dict[str, list[int]] = {task["id"]: [] for task in tasks}
    for task in tasks:
        order = [event["id"] for event in await log_of(admin, task["id"])]
        delivered: set[str] = set()
        for request in receiver.at("order"):
            if request.delivery not in order:
                continue
            # Nothing of a task goes out while an earlier event of it is undelivered.
            earlier = order[: order.index(request.delivery)]
            assert set(earlier) <= delivered, (task["id"], request.delivery)
            if request.status == 200:
                delivered.add(request.delivery)
                positions[task["id"]].append(json.loads(request.body)["position"])
        assert delivered == set(order)
    assert all(p == sorted(p) for p in positions.values()), positions
    assert len([r for r in receiver.at("order") if r.status == 500]) > 5  # retries did happen
    assert services.errors() == [], services.tails()


async def test_a_slow_or_dead_endpoint_does_not_delay_a_healthy_one(
    stack: Stack, services: Services, receiver: Receiver, admin: Client
) -> None:
    receiver.plans["slow"] = lambda _d, _e: HANG
    webhooks = sender(
        services, DEPLOYX_WEBHOOK_CONCURRENCY="16", DEPLOYX_WEBHOOK_PER_SUBSCRIPTION="4"
    )
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    slow = await subscribe(admin, receiver.url("slow"), "TaskCreated")
    refused = await subscribe(admin, dead, "TaskCreated")
    await subscribe(admin, receiver.url("healthy"), "TaskCreated")
    for _ in range(40):
        await create_task(admin)
    await arrive(receiver, "healthy", 40, [webhooks])
    # Each of the slow endpoint's requests holds one of its 4 slots for the 1 s timeout: had the
    # healthy endpoint waited behind them, the slow one would have had all 40 first.
    slow_so_far = len(receiver.at("slow"))
    assert 4 <= slow_so_far < 40, slow_so_far

    async def failing(hook: dict[str, Any], error: str) -> bool:
        _, page = await admin.get(f"/api/webhooks/{hook['id']}/deliveries?status=pending")
        errors: list[str] = [a["error"] for d in page["items"] for a in d["attempts"]]
        return bool(errors) and all(error in str(e) for e in errors)

    await wait_until(lambda: failing(slow, "no answer within 1 s"), 15, "timeouts", [webhooks])
    await wait_until(lambda: failing(refused, "onnect"), 15, "refusals", [webhooks])


async def test_a_delivery_given_up_is_failed_visible_and_can_be_sent_again(
    stack: Stack, services: Services, receiver: Receiver, admin: Client
) -> None:
    up = {"now": False}
    receiver.plans["later"] = lambda _d, _e: 200 if up["now"] else 503
    webhooks = sender(services, DEPLOYX_WEBHOOK_RETRY_SECONDS="2")
    hook = await subscribe(admin, receiver.url("later"), "TaskCreated", "TaskPaused")
    task = await create_task(admin)
    deliveries = f"/api/webhooks/{hook['id']}/deliveries"

    async def failed() -> bool:
        _, page = await admin.get(f"{deliveries}?status=failed")
        return bool(page["total"] == 1)

    await wait_until(failed, 15, "the delivery to be given up", [webhooks])
    _, page = await admin.get(f"{deliveries}?status=failed")
    [gone] = page["items"]
    assert len(gone["attempts"]) >= 3 and gone["last_error"] == "HTTP 503: receiver says no"
    # Its task's next event is not held back by the one given up.
    up["now"] = True
    assert (await admin.post(f"{TASKS}/{task['id']}/pause"))[0] == 200
    [paused] = await arrive(receiver, "later", 1, [webhooks])
    assert paused.headers["X-DeployX-Event"] == "TaskPaused"

    status, again = await admin.post(f"{deliveries}/{gone['event_id']}/resend")
    assert status == 202 and again["status"] == "pending", again
    await arrive(receiver, "later", 2, [webhooks])
    assert receiver.answered("later")[-1].delivery == gone["event_id"]
    await recorded(admin, hook, 2, [webhooks])
    status, again = await admin.post(f"{deliveries}/{paused.delivery}/resend")
    assert status == 202, again  # delivered ones may be sent again too


async def test_webhooks_are_for_admins_and_their_input_is_checked(
    stack: Stack, services: Services, receiver: Receiver, admin: Client
) -> None:
    webhooks = sender(services)
    for role in ("viewer", "operator"):
        other = await stack.client(f"hooks-{role}", role)
        for method, path in (("GET", "/api/webhooks"), ("POST", "/api/webhooks")):
            status, body = await other.call(method, path, {})
            assert status == 403, (role, path, body)
    good = {"url": receiver.url("test"), "event_types": ["TaskCreated"], "secret": SECRET}
    for change, field in (
        ({"url": "ftp://127.0.0.1/x"}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "url"),
        ({"url": "http://127.0.0.1:99999/x"}, "url"),
        ({"url": "http:///x"}, "url"),
        ({"url": "http://127.0.0.1/" + "x" * 2100}, "url"),
        ({"event_types": ["TaskExploded"]}, "event_types.0"),
        ({"event_types": []}, "event_types"),
        ({"secret": "short"}, "secret"),
        ({"task_id": "not-a-uuid"}, "task_id"),
        ({"colour": "red"}, "colour"),
    ):
        status, error = await admin.post("/api/webhooks", good | change)
        assert status == 422 and error["error"]["details"]["field"] == field, (change, error)

    hook = await subscribe(admin, receiver.url("test"), "TaskCreated")
    status, ping = await admin.post(f"/api/webhooks/{hook['id']}/test")
    assert status == 202 and ping["event_type"] == "WebhookTest", ping
    [got] = await arrive(receiver, "test", 1, [webhooks])
    assert got.headers["X-DeployX-Event"] == "WebhookTest" and got.delivery == ping["event_id"]
    expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-DeployX-Signature"] == f"sha256={expected}"
    _, listed = await admin.get("/api/webhooks")
    assert [item["id"] for item in listed["items"]] == [hook["id"]]
    assert (await admin.delete(f"/api/webhooks/{hook['id']}"))[0] == 204
    assert (await admin.get(f"/api/webhooks/{hook['id']}/deliveries"))[0] == 404
    assert (await admin.delete(f"/api/webhooks/{hook['id']}"))[0] == 404
    assert (await admin.post("/api/webhooks/nope/test"))[0] == 404
