"""Routes agents' reports to the executions waiting for them, trusting only the subject's device."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import nats.aio.client
import nats.aio.msg
import nats.aio.subscription
import structlog

from services.agent_protocol import JobReport, device_of

log = structlog.get_logger("deployx.executor")
_report = msgspec.json.Decoder(JobReport)
ALL_RESULTS = "deployx.agents.*.results"

OnReport = Callable[[str, JobReport], None]


class ResultRouter:
    """One subscription for every result; each job id maps to the run that dispatched it."""

    def __init__(self, client: nats.aio.client.Client) -> None:
        self._nc = client
        self._expected: dict[str, tuple[str, OnReport]] = {}
        self._subscription: nats.aio.subscription.Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self._nc.subscribe(ALL_RESULTS, cb=self._on_message)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    def expect(self, job_id: str, device_id: str, on_report: OnReport) -> None:
        self._expected[job_id] = (device_id, on_report)

    def forget(self, job_id: str) -> None:
        self._expected.pop(job_id, None)

    async def _on_message(self, msg: nats.aio.msg.Msg) -> None:
        sender = device_of(msg.subject)
        try:
            report = _report.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("bad_result", device_id=sender)
            return
        expected = self._expected.get(report.job_id)
        if expected is None:
            return  # not ours: another replica's run, or one already finished
        device_id, on_report = expected
        if device_id != sender:
            # Only that device's agent may speak for it (NATS permissions fix the subject).
            log.warning("result_rejected", job_id=report.job_id, sender=sender, device=device_id)
            return
        on_report(device_id, report)
