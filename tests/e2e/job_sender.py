"""Jobs sent to a real agent as an executor sends them over NATS, and the agent's reports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import nats
import nats.aio.client
import nats.aio.msg

from services.agent.protocol import Job, JobReport, jobs_subject, results_subject


class JobSender:
    """Sends jobs to one device and hears its reports."""

    def __init__(self, client: nats.aio.client.Client, device_id: str) -> None:
        self.client, self.device_id = client, device_id
        self.reports: asyncio.Queue[JobReport] = asyncio.Queue()

    async def listen(self) -> None:
        await self.client.subscribe(results_subject(self.device_id), cb=self._on_report)
        await self.client.flush()
        await self.client.flush()  # nats-py 2.16: the first PING may overtake the SUB

    async def _on_report(self, msg: nats.aio.msg.Msg) -> None:
        await self.reports.put(msgspec.json.decode(msg.data, type=JobReport))

    async def send(self, job: Job) -> None:
        await self.client.publish(jobs_subject(self.device_id), msgspec.json.encode(job))
        await self.client.flush()

    async def finished(self, job_id: str, timeout: float = 30) -> JobReport:
        """The job's finished report (others' reports and its "accepted" are passed over)."""
        async with asyncio.timeout(timeout):
            while True:
                report = await self.reports.get()
                if report.job_id == job_id and report.state == "finished":
                    return report


@asynccontextmanager
async def job_sender(nats_url: str, device_id: str) -> AsyncIterator[JobSender]:
    client = await nats.connect(nats_url)
    try:
        sender = JobSender(client, device_id)
        await sender.listen()
        yield sender
    finally:
        await client.close()
