"""The executor service for one task type: a durable JetStream consumer shared by its replicas."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import asyncpg
import msgspec
import nats.aio.client
import nats.aio.msg
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from events.codec import Envelope, decode_data
from services.domain.execution import DEVICES_PER_EVENT
from services.engine.relay import STREAM, ensure_stream
from services.executor.reconciler import reconcile
from services.executor.results import ResultRouter
from services.executor.run import PACING, ExecutionRun, Pacing
from services.executor.spec import order_of
from services.infra import dead_letters
from services.infra.bus import NATS_UNAVAILABLE
from services.infra.clock import Clock, wait_first
from services.infra.db import UNAVAILABLE, describe
from services.infra.metrics import EXECUTOR_RESULTS, EXECUTOR_RUNS_IN_FLIGHT, export
from services.infra.rejections import Rejections
from services.infra.store import read_positions

log = structlog.get_logger("deployx.executor")
_envelope = msgspec.json.Decoder(Envelope)

# Unacknowledged this long, a TaskDue goes to another replica; a run in progress says so sooner
# (every PROGRESS_EVERY seconds, or three times per ack wait when that is shorter).
ACK_WAIT = timedelta(seconds=60)
PROGRESS_EVERY = 20.0
MAX_RUNNING = 500
RECONCILE_EVERY = 30.0
# Refused device messages are written, and admins' retries of dead letters picked up, this often.
HOUSEKEEPING_EVERY = 1.0
# On shutdown, runs still in hand are cancelled and their TaskDue handed back at once (nak, no
# delay): another replica resumes each from the log. The hand-back itself may take this long.
HAND_BACK_TIMEOUT = 5.0
# A TaskDue whose run failed this many deliveries in a row (not for an outage) is set aside:
# its execution is finished by the reconciler, and an admin may retry it once the cause is fixed.
MAX_DELIVERIES = 5


def consumer_name(task_type: str) -> str:
    return f"executor-{task_type}"


async def run_executor(
    pool: asyncpg.Pool,
    client: nats.aio.client.Client,
    task_type: str,
    clock: Clock,
    stop: asyncio.Event,
    ack_wait: timedelta = ACK_WAIT,
    stream_replicas: int = 1,
    rejections: Rejections | None = None,
    per_event: int = DEVICES_PER_EVENT,
    pacing: Pacing = PACING,
) -> None:
    js = client.jetstream()
    await ensure_stream(js, stream_replicas)
    router = ResultRouter(client, rejections or Rejections())
    await router.start()
    subscriptions = [
        await js.pull_subscribe(
            f"deployx.events.{task_type}.{event_type}",
            durable=durable,
            stream=STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ack_wait.total_seconds(),
                max_deliver=-1,
                max_ack_pending=MAX_RUNNING * 4,
                deliver_policy=DeliverPolicy.ALL,
            ),
        )
        for event_type, durable in (
            ("TaskDue", consumer_name(task_type)),
            ("ExecutionRequested", f"{consumer_name(task_type)}-requests"),
        )
    ]
    subscription = subscriptions[0]
    # The consumer's own ack wait, which its creator chose: another replica's setting may differ.
    info = await subscription.consumer_info()
    consumer_ack_wait = info.config.ack_wait or ack_wait.total_seconds()
    progress_every = min(PROGRESS_EVERY, consumer_ack_wait / 3)
    # The series exist from the start, at 0, rather than from the first run.
    export(EXECUTOR_RUNS_IN_FLIGHT, EXECUTOR_RESULTS)
    EXECUTOR_RUNS_IN_FLIGHT.labels(task_type)
    EXECUTOR_RESULTS.labels(task_type, "success")
    slots = asyncio.Semaphore(MAX_RUNNING)
    running: set[asyncio.Task[None]] = set()
    reconciler = asyncio.create_task(_reconcile_forever(pool, task_type, clock, stop))
    housekeeping = asyncio.create_task(
        _housekeeping_forever(pool, client, router, clock, task_type, stop, per_event, pacing)
    )
    log.info("executor_started", task_type=task_type, ack_wait=consumer_ack_wait)

    async def consume(source: JetStreamContext.PullSubscription) -> None:
        while not stop.is_set():
            try:
                # A short expiry: with a long one, nats-py may hold a lone message until the
                # pull request expires (up to its timeout late).
                messages = await source.fetch(batch=100, timeout=0.1)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except NATS_UNAVAILABLE as exc:
                # The consumer is electing a leader (a NATS node was lost) or NATS is away:
                # the subscription still holds, so fetch again in a moment.
                log.warning("fetch_failed", error=describe(exc))
                await wait_first(stop, timeout=1.0)
                continue
            for message in messages:
                await slots.acquire()
                work = asyncio.create_task(
                    _handle(
                        pool,
                        client,
                        router,
                        clock,
                        task_type,
                        message,
                        progress_every,
                        per_event,
                        pacing,
                    )
                )
                running.add(work)
                work.add_done_callback(running.discard)
                work.add_done_callback(lambda _: slots.release())

    try:
        await asyncio.gather(*(consume(source) for source in subscriptions))
    finally:
        reconciler.cancel()
        housekeeping.cancel()
        await _hand_back(running)
        for source in subscriptions:
            await source.unsubscribe()
        await router.stop()


async def _handle(
    pool: asyncpg.Pool,
    client: nats.aio.client.Client,
    router: ResultRouter,
    clock: Clock,
    task_type: str,
    message: nats.aio.msg.Msg,
    progress_every: float,
    per_event: int,
    pacing: Pacing,
) -> None:
    try:
        envelope = _envelope.decode(message.data)
        order = order_of(decode_data(envelope.type, bytes(envelope.data)), envelope.version)
    except (msgspec.DecodeError, TypeError, ValueError, KeyError) as exc:
        # Only services publish on the events stream; still, one such message must not stall.
        log.error("task_due_unreadable", error=describe(exc), subject=message.subject)
        await message.term()
        return
    structlog.contextvars.bind_contextvars(execution_id=order.execution_id)
    delivery = message.metadata.num_delivered
    if delivery > 1:
        log.info("execution_resumed", delivery=delivery)
    progress = asyncio.create_task(_keep_in_progress(message, progress_every))
    in_flight = EXECUTOR_RUNS_IN_FLIGHT.labels(task_type)
    in_flight.inc()
    try:
        fresh = delivery == 1
        run = ExecutionRun(
            pool, client, router, clock, order, task_type, per_event, fresh=fresh, pacing=pacing
        )
        await run.run()
        # Everything is in PostgreSQL now; only then may JetStream forget the TaskDue.
        await message.ack()
    except asyncio.CancelledError:
        # This executor is stopping: another replica takes the TaskDue now, not after the ack
        # wait, and resumes the run from what is recorded (its agents answer from their
        # journals).
        with contextlib.suppress(Exception):  # acknowledged already, or NATS away: redelivered
            await message.nak()
        raise
    except UNAVAILABLE as exc:
        # The database is away: what is recorded holds, and the redelivery resumes from it.
        log.warning("execution_failed", error=describe(exc))
        await message.nak(delay=5)
    except Exception as exc:
        log.exception("execution_failed")
        if message.metadata.num_delivered < MAX_DELIVERIES:
            await message.nak(delay=5)
            return
        await dead_letters.set_aside_at(
            pool,
            consumer_name(task_type),
            event_id=envelope.id,
            position=envelope.position,
            stream_id=envelope.stream_id,
            event_type=envelope.type,
            error=dead_letters.describe_failure(exc),
        )
        await message.term()
    finally:
        in_flight.dec()
        progress.cancel()


async def _hand_back(running: set[asyncio.Task[None]]) -> None:
    """Cancels every run in hand; each hands its TaskDue back (see _handle)."""
    handing = set(running)
    if not handing:
        return
    for work in handing:
        work.cancel()
    _, stuck = await asyncio.wait(handing, timeout=HAND_BACK_TIMEOUT)
    log.info("runs_handed_back", runs=len(handing) - len(stuck), stuck=len(stuck))


async def _keep_in_progress(message: nats.aio.msg.Msg, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await message.in_progress()


async def _housekeeping_forever(
    pool: asyncpg.Pool,
    client: nats.aio.client.Client,
    router: ResultRouter,
    clock: Clock,
    task_type: str,
    stop: asyncio.Event,
    per_event: int,
    pacing: Pacing,
) -> None:
    while not stop.is_set():
        try:
            await router.rejections.flush(pool, clock.now())
            await _retry_dead_letters(pool, client, router, clock, task_type, per_event, pacing)
        except UNAVAILABLE as exc:
            log.warning("housekeeping_failed", error=describe(exc))
        except Exception:
            log.exception("housekeeping_failed")
        await wait_first(stop, timeout=HOUSEKEEPING_EVERY)


async def _retry_dead_letters(
    pool: asyncpg.Pool,
    client: nats.aio.client.Client,
    router: ResultRouter,
    clock: Clock,
    task_type: str,
    per_event: int,
    pacing: Pacing,
) -> None:
    """Runs again each TaskDue an admin asked to retry; a run already finished stays as it is."""
    letters = await dead_letters.retry_requested(pool, [consumer_name(task_type)])
    if not letters:
        return
    events = await read_positions(pool, [letter.position for letter in letters])
    for letter, recorded in zip(letters, events, strict=True):
        try:
            order = order_of(recorded.event, recorded.version)
            run = ExecutionRun(
                pool, client, router, clock, order, task_type, per_event, pacing=pacing
            )
            await run.run()
        except UNAVAILABLE:
            raise
        except Exception as exc:
            log.exception("dead_letter_retry_failed", dead_letter=letter.id)
            await dead_letters.failed_again(pool, letter.id, dead_letters.describe_failure(exc))
        else:
            await dead_letters.resolve(pool, [letter.id])


async def _reconcile_forever(
    pool: asyncpg.Pool, task_type: str, clock: Clock, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            await reconcile(pool, task_type, clock.now())
        except UNAVAILABLE as exc:
            log.warning("reconcile_failed", error=describe(exc))
        except Exception:
            log.exception("reconcile_failed")
        await wait_first(stop, timeout=RECONCILE_EVERY)
