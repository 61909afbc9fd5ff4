"""`deployx audit verify | export | head`: checking the sealed log, in the database or a copy."""

from __future__ import annotations

import os
import sys
from collections import deque
from pathlib import Path
from typing import BinaryIO

import asyncpg
import msgspec

from services.domain import audit_chain
from services.domain.audit_chain import GENESIS, Problem
from services.domain.audit_export import End, FileCheck, Head, Header, encode_line, sealed_line
from services.infra import audit_store
from services.infra.audit_store import LogEvent
from services.infra.settings import Settings
from services.infra.store import LogCursor

CHUNK = 5000
Anchors = dict[int, bytes]  # position -> the chain's hash after it


def parse_anchor(text: str) -> tuple[int, bytes]:
    """POSITION:HASH, as `deployx audit head` prints them."""
    position, _, digest = text.partition(":")
    try:
        parsed = (int(position), bytes.fromhex(digest))
    except ValueError:
        raise SystemExit(f"--anchor {text!r}: give POSITION:HASH (hex)") from None
    if len(parsed[1]) != 32:
        raise SystemExit(f"--anchor {text!r}: the hash is 64 hex digits")
    return parsed


def _fail(problem: Problem) -> int:
    print(f"FAILED: {problem.message}", flush=True)
    return 1


async def verify_database(database_url: str, anchors: Anchors) -> int:
    """Walks the chain and the log side by side; 0 if every sealed event is intact."""
    conn = await asyncpg.connect(database_url)
    try:
        previous, seq, cursor = GENESIS, 0, LogCursor()
        position: int | None = None
        log: deque[LogEvent] = deque()
        while seals := await audit_store.seals_after(conn, seq, CHUNK):
            for seal in seals:
                if not log:
                    log.extend(await audit_store.read_log(conn, cursor, CHUNK))
                found = log[0].event if log else None
                if found is None or (found.position, found.id) != (seal.position, seal.event_id):
                    present = await audit_store.event_present(conn, seal.event_id)
                    sealed = found is not None and await audit_store.event_sealed(conn, found.id)
                    return _fail(
                        audit_chain.misplaced(
                            seal, found, still_present=present, found_sealed=sealed
                        )
                    )
                problem = audit_chain.altered(previous, seal, found)
                expected = anchors.pop(seal.position, seal.hash)
                if problem is None and expected != seal.hash:
                    problem = audit_chain.anchor_mismatch(seal.position, expected, seal.hash)
                if problem is not None:
                    return _fail(problem)
                cursor = log.popleft().cursor
                previous, seq, position = seal.hash, seal.seq, seal.position
        for anchored, expected in sorted(anchors.items()):
            return _fail(audit_chain.anchor_mismatch(anchored, expected, None))
        unsealed = await audit_store.unsealed_count(conn, cursor)
    finally:
        await conn.close()
    print(
        f"ok: {seq} sealed events intact, up to position {position} (seal {seq}, head "
        f"{previous.hex()}); {unsealed} newer events not sealed yet",
        flush=True,
    )
    return 0


def verify_file(path: Path, anchors: Anchors) -> int:
    """Checks an export with nothing but the file (and anchors kept elsewhere)."""
    check = FileCheck()
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            sealed_before = check.events
            problem = check.feed(number, raw)
            if problem is None and check.events > sealed_before:
                assert check.position is not None and check.previous is not None
                expected = anchors.pop(check.position, check.previous)
                if expected != check.previous:
                    problem = audit_chain.anchor_mismatch(check.position, expected, check.previous)
            if problem is not None:
                return _fail(problem)
    problem = check.finish()
    for anchored, expected in sorted(anchors.items()):
        problem = problem or audit_chain.anchor_mismatch(anchored, expected, None)
    if problem is not None:
        return _fail(problem)
    head = check.head()
    print(
        f"ok: {check.events} sealed events intact in {path}, up to position {head.position} "
        f"(seal {head.seq}, head {head.hash})",
        flush=True,
    )
    return 0


def open_export(out: Path) -> BinaryIO:
    """The export's file, readable by its owner only: events hold what tasks run."""
    return open(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


async def export(database_url: str, file: BinaryIO, after: int | None) -> int:
    """Writes the sealed events after position `after` (all by default) with their seals."""
    conn = await asyncpg.connect(database_url)
    try:
        previous, seq = GENESIS, 0
        if after is not None:
            start = await audit_store.seal_at(conn, after)
            if start is None:
                raise SystemExit(f"position {after} is not sealed (yet): nothing to start after")
            previous, seq = start.hash, start.seq
        last = (await audit_store.head(conn)).seq  # what is sealed meanwhile is left out
        written, position = 0, None
        file.write(encode_line(Header(after_seq=seq, previous=previous.hex())))
        while seq < last and (batch := await audit_store.sealed_events(conn, seq, CHUNK)):
            for seal, event in batch:
                if seal.seq > last:
                    break
                seq = seal.seq
                if event is None:
                    print(
                        f"position {seal.position} (seal {seal.seq}) is sealed but no longer "
                        "in the log: the export will not verify",
                        file=sys.stderr,
                    )
                    continue
                file.write(encode_line(sealed_line(seal, event)))
                previous, position, written = seal.hash, seal.position, written + 1
        end = End(events=written, seq=seq, position=position, hash=previous.hex())
        file.write(encode_line(end))
    finally:
        await conn.close()
    print(f"exported {written} sealed events, up to seal {seq}", file=sys.stderr)
    return 0


async def current_head(database_url: str) -> Head:
    conn = await asyncpg.connect(database_url)
    try:
        head = await audit_store.head(conn)
    finally:
        await conn.close()
    return Head(seq=head.seq, position=head.position, hash=head.hash.hex())


def print_head(head: Head) -> None:
    print(msgspec.json.encode(head).decode(), flush=True)
    if head.position is not None:
        print(f"--anchor {head.position}:{head.hash}", file=sys.stderr)


async def latest_anchor(settings: Settings) -> Head | None:
    """The last anchor the sealer published on NATS, as `head` prints the database's."""
    from services.engine.anchors import latest_published
    from services.infra.bus import connect_nats

    client = await connect_nats(settings.nats_url, "deployx-audit", settings.nats_ca)
    try:
        anchor = await latest_published(client.jetstream())
    finally:
        await client.close()
    if anchor is None:
        return None
    return Head(seq=anchor.seq, position=anchor.position, hash=anchor.hash)
