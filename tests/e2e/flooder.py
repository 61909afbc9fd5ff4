"""A compromised device's agent connection asking the file server for a chunk as fast as its
client can publish, without waiting for answers (run as a process of its own):

    python -m tests.e2e.flooder NATS_URL DEVICE_ID JOB_ID FILE_ID

It prints one line once it is connected and publishing, then publishes until killed.
"""

from __future__ import annotations

import asyncio
import sys

import msgspec
import nats
import nats.aio.msg

from services.agent.file_protocol import ChunkRequest, files_subject
from services.infra.nats_auth import agent_inbox_prefix


async def _ignore(_: nats.aio.msg.Msg) -> None:
    return None


async def flood(url: str, device_id: str, job_id: str, file_id: str) -> None:
    nc = await nats.connect(url, inbox_prefix=agent_inbox_prefix(device_id))
    inbox = nc.new_inbox()
    await nc.subscribe(inbox, cb=_ignore)
    request = msgspec.json.encode(ChunkRequest(job_id=job_id, file_id=file_id))
    subject = files_subject(device_id)
    await nc.publish(subject, request, reply=inbox)
    await nc.flush()
    print("flooding", flush=True)
    while True:  # nats-py sends whenever its buffer fills: as fast as this client goes
        await nc.publish(subject, request, reply=inbox)


if __name__ == "__main__":
    asyncio.run(flood(*sys.argv[1:5]))
