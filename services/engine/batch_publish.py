"""Publishing a batch to a JetStream stream with one reply subscription for all of its acks.

js.publish_async costs more than the publish itself for each message (a semaphore wait through
asyncio.wait_for, a future and its callbacks, a JSON parse into a PubAck): for a burst of
10,000 events that was most of the relay's time. Here a message is a core publish with a reply
subject of ours, and an ack is one dictionary removal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Sequence

import msgspec
import nats.aio.client
import nats.aio.msg
import nats.aio.subscription
import nats.errors
import nats.js.errors

# nats-server answers a publish to a subject no stream takes with this status.
_NO_RESPONDERS = "503"


class Outgoing(msgspec.Struct, frozen=True):
    subject: str
    payload: bytes
    msg_id: str  # Nats-Msg-Id: the stream drops a second copy within its duplicate window


class BatchPublisher:
    """Publishes batches one at a time; each returns once the stream has acked all of it."""

    def __init__(self, client: nats.aio.client.Client, ack_stall: float) -> None:
        self._nc, self._ack_stall = client, ack_stall
        self._prefix = f"{client.new_inbox()}."
        self._subscription: nats.aio.subscription.Subscription | None = None
        self._batches = itertools.count()
        self._waiting: set[str] = set()
        self._acked = asyncio.Event()
        self._failure: Exception | None = None

    async def __aenter__(self) -> BatchPublisher:
        self._subscription = await self._nc.subscribe(f"{self._prefix}*", cb=self._on_ack)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):  # it went with a lost connection
                await self._subscription.unsubscribe()

    async def publish(self, batch: Sequence[Outgoing]) -> None:
        """Publishes the batch pipelined and returns once every message is acked; raises the
        stream's error for one, or TimeoutError when no ack came for ack_stall seconds (they
        went to a stream leader that died: publish the batch again)."""
        number = next(self._batches)
        replies = [f"{self._prefix}{number}-{index}" for index in range(len(batch))]
        self._waiting = {reply[len(self._prefix) :] for reply in replies}
        self._failure = None
        self._acked.clear()
        for outgoing, reply in zip(batch, replies, strict=True):
            await self._nc.publish(
                outgoing.subject,
                outgoing.payload,
                reply=reply,
                headers={"Nats-Msg-Id": outgoing.msg_id},
            )
        while self._waiting and self._failure is None:
            before = len(self._waiting)
            try:
                await asyncio.wait_for(self._acked.wait(), self._ack_stall)
            except TimeoutError:
                if len(self._waiting) == before:
                    raise TimeoutError(f"no ack for {self._ack_stall} s") from None
            self._acked.clear()
        self._waiting = set()
        if self._failure is not None:
            raise self._failure

    async def _on_ack(self, msg: nats.aio.msg.Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        if token not in self._waiting:
            return  # of a batch given up on (its messages went out again since)
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            self._failure = nats.js.errors.NoStreamResponseError()
        elif b'"error"' in msg.data:
            answer = json.loads(msg.data)
            if "error" in answer:
                self._failure = nats.js.errors.APIError.from_error(answer["error"])
        self._waiting.discard(token)
        if not self._waiting or self._failure is not None:
            self._acked.set()
