"""Routes agents' reports to the executions waiting for them, trusting only the subject's device."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import nats.aio.client
import nats.aio.msg
import nats.aio.subscription
import structlog

from services.agent.protocol import (
    DECODE_ERRORS,
    ERROR_LIMIT,
    OUTPUT_LIMIT,
    JobReference,
    JobReport,
    device_of,
    storable,
)
from services.infra.rejections import Rejections

log = structlog.get_logger("deployx.executor")
_report = msgspec.json.Decoder(JobReport)
_reference = msgspec.json.Decoder(JobReference)
ALL_RESULTS = "deployx.agents.*.results"
# The relay publishes every event; a run in hand hears of a cancel through this at once.
ALL_CANCELS = "deployx.events.*.ExecutionCancelRequested"


class _Stream(msgspec.Struct):
    stream_id: str


_stream = msgspec.json.Decoder(_Stream)

OnReport = Callable[[str, JobReport], None]


class ResultRouter:
    """One subscription for every result; each job id maps to the run that dispatched it."""

    def __init__(self, client: nats.aio.client.Client, rejections: Rejections) -> None:
        self._nc, self.rejections = client, rejections
        self._expected: dict[str, tuple[str, OnReport]] = {}
        self._watched: dict[str, Callable[[], None]] = {}
        self._subscriptions: list[nats.aio.subscription.Subscription] = []

    async def start(self) -> None:
        self._subscriptions = [
            await self._nc.subscribe(ALL_RESULTS, cb=self._on_message),
            await self._nc.subscribe(ALL_CANCELS, cb=self._on_cancel),
        ]

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.unsubscribe()

    def watch(self, execution_id: str, on_change: Callable[[], None]) -> None:
        """on_change is called when a cancel of that execution is recorded."""
        self._watched[execution_id] = on_change

    def unwatch(self, execution_id: str) -> None:
        self._watched.pop(execution_id, None)

    async def _on_cancel(self, msg: nats.aio.msg.Msg) -> None:
        try:
            stream_id = _stream.decode(msg.data).stream_id
        except DECODE_ERRORS:
            return
        on_change = self._watched.get(stream_id)
        if on_change is not None:
            on_change()

    def expect(self, job_id: str, device_id: str, on_report: OnReport) -> None:
        self._expected[job_id] = (device_id, on_report)

    def forget(self, job_id: str) -> None:
        self._expected.pop(job_id, None)

    async def _on_message(self, msg: nats.aio.msg.Msg) -> None:
        sender = device_of(msg.subject)
        try:
            report = _sized(_report.decode(msg.data))
        except DECODE_ERRORS as exc:
            self._refused(sender, msg.data, str(exc) or type(exc).__name__)
            return
        expected = self._expected.get(report.job_id)
        if expected is None:
            return  # not ours: another replica's run, or one already finished
        device_id, on_report = expected
        if device_id != sender:
            # Only that device's agent may speak for it (NATS permissions fix the subject).
            self.rejections.note(sender, "result", "a result for another device's job", msg.data)
            return
        on_report(device_id, report)

    def _refused(self, sender: str, data: bytes, reason: str) -> None:
        """A report that does not decode; if it names a job of its sender's, the job fails."""
        self.rejections.note(sender, "result", reason, data)
        try:
            # Invalid UTF-8 anywhere fails the whole document; the job id may still be read.
            job_id = _reference.decode(data.decode("utf-8", errors="replace")).job_id
        except DECODE_ERRORS:
            return
        expected = self._expected.get(job_id)
        if expected is None or expected[0] != sender:
            return
        device_id, on_report = expected
        refused = f"the agent's report was refused: {reason}"
        on_report(
            device_id, JobReport(job_id=job_id, state="finished", status="failed", error=refused)
        )


def _sized(report: JobReport) -> JobReport:
    """The report with its texts cut to what is stored and made storable (no NUL)."""
    return msgspec.structs.replace(
        report,
        stdout=storable(report.stdout, OUTPUT_LIMIT),
        stderr=storable(report.stderr, OUTPUT_LIMIT),
        error=None if report.error is None else storable(report.error, ERROR_LIMIT, "…"),
    )
