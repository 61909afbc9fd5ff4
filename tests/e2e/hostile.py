"""A hostile device: speaks the real agent protocol on its own NATS subjects, saying anything."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import nats
import nats.aio.client
import nats.aio.msg

from services.agent.protocol import heartbeat_subject, jobs_subject, results_subject

# What it sends in answer to a job: raw bytes, so that it can break any rule of the protocol.
Answer = Callable[[dict[str, Any]], list[bytes]]


def heartbeat(device_id: str, **overrides: Any) -> dict[str, Any]:
    """A well-formed heartbeat of device_id, with any field replaced."""
    now = datetime.now(UTC).isoformat()
    beat: dict[str, Any] = {
        "device_id": device_id,
        "hostname": f"{device_id}.example",
        "os": "Linux",
        "agent_version": "0.0-hostile",
        "labels": {},
        "started_at": now,
        "sent_at": now,
        "interval_seconds": 1.0,
    }
    return beat | overrides


def finished(job: dict[str, Any], **fields: Any) -> list[bytes]:
    """ "accepted", then a finished report of the job with these fields (raw JSON)."""
    accepted = {"job_id": job["job_id"], "state": "accepted"}
    report = {"job_id": job["job_id"], "state": "finished", "status": "success"} | fields
    return [json.dumps(accepted).encode(), json.dumps(report).encode()]


class HostileDevice:
    """Heartbeats (as told) every second, and answers each job it is sent with `answer`."""

    def __init__(self, nats_url: str, device_id: str, answer: Answer | None = None) -> None:
        self.nats_url, self.device_id, self.answer = nats_url, device_id, answer
        self.beat: dict[str, Any] | bytes = heartbeat(device_id)
        self.jobs: list[dict[str, Any]] = []
        self._nc: nats.aio.client.Client | None = None
        self._beating: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HostileDevice:
        self._nc = await nats.connect(self.nats_url)
        await self._nc.subscribe(jobs_subject(self.device_id), cb=self._on_job)
        self._beating = asyncio.create_task(self._beat_forever())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        if self._nc is not None:
            await self._nc.close()

    async def publish(self, subject: str, data: bytes) -> None:
        assert self._nc is not None
        await self._nc.publish(subject, data)
        await self._nc.flush()

    async def _beat_forever(self) -> None:
        while True:
            beat = self.beat
            if isinstance(beat, dict):
                beat = json.dumps(beat | {"sent_at": datetime.now(UTC).isoformat()}).encode()
            await self.publish(heartbeat_subject(self.device_id), beat)
            await asyncio.sleep(1.0)

    async def _on_job(self, msg: nats.aio.msg.Msg) -> None:
        job = json.loads(msg.data)
        self.jobs.append(job)
        if self.answer is None:
            return
        for data in self.answer(job):
            await self.publish(results_subject(self.device_id), data)
