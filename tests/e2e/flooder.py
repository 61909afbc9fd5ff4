"""A compromised device's agent connection publishing on one of its own subjects as fast as its
client can, without waiting for answers (run as a process of its own):

    python -m tests.e2e.flooder NATS_URL DEVICE_ID KIND MESSAGE

KIND is the subject's last token (`files`, `results`, `heartbeat`); each message asks for an
answer in the device's inbox. It prints one line once it is connected and publishing, then
publishes until killed.
"""

from __future__ import annotations

import asyncio
import sys
from asyncio.subprocess import Process

import nats
import nats.aio.msg

from services.infra.nats_auth import agent_inbox_prefix


async def _ignore(_: nats.aio.msg.Msg) -> None:
    return None


async def flood(url: str, device_id: str, kind: str, message: str) -> None:
    nc = await nats.connect(url, inbox_prefix=agent_inbox_prefix(device_id))
    inbox = nc.new_inbox()
    await nc.subscribe(inbox, cb=_ignore)
    subject, data = f"deployx.agents.{device_id}.{kind}", message.encode()
    await nc.publish(subject, data, reply=inbox)
    await nc.flush()
    print("flooding", flush=True)
    while True:  # nats-py sends whenever its buffer fills: as fast as this client goes
        await nc.publish(subject, data, reply=inbox)


if __name__ == "__main__":
    asyncio.run(flood(*sys.argv[1:5]))


async def flooding(url: str, device_id: str, kind: str, message: bytes) -> Process:
    """The flooder started, once it publishes; the caller kills it."""
    flooder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.e2e.flooder",
        url,
        device_id,
        kind,
        message.decode(),
        stdout=asyncio.subprocess.PIPE,
    )
    assert flooder.stdout is not None
    try:
        assert await asyncio.wait_for(flooder.stdout.readline(), 10) == b"flooding\n"
    except BaseException:
        flooder.kill()
        await flooder.wait()
        raise
    return flooder
