"""A task's definition at any version of its stream, read once per process.

A task's stream is mostly TaskDue events (one per run: a task fired 10,000 times has 10,000 of
them) between a few edits. What a run does is its task's TaskCreated with every TaskUpdated up to
its TaskDue applied, so only those definition events are read, and only the part of the stream
not read before: events are never changed, and every version up to a TaskDue's is committed
once the TaskDue is (appends go version by version), so what was read holds for good.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict

from events.codec import decode_or_undecodable
from events.task import TaskCreated
from services.domain.task import TaskState, evolve
from services.infra.db import Db

# Tasks whose definitions a process keeps (least recently used goes first).
KEPT = 4096
_KINDS = ["TaskCreated", "TaskUpdated"]

# Version 1 (the TaskCreated) always comes back, to check the stream is the one read before: a
# task id names one stream per database, and a process may speak to another database later.
_READ = """
SELECT version, type, data::text, schema_version, id::text FROM events
WHERE stream_id = $1 AND version = 1
UNION ALL
SELECT version, type, data::text, schema_version, id::text FROM events
WHERE stream_id = $1 AND version > greatest($2, 1) AND version <= $3 AND type = ANY ($4::text[])
ORDER BY version
"""


class _Known:
    """One task's definitions: after each definition event (its version), the task as then."""

    def __init__(self, created_id: str) -> None:
        self.created_id = created_id
        self.read_to = 0  # every definition event up to this version is in `versions`
        self.versions: list[int] = []
        self.specs: list[TaskCreated] = []

    def at(self, version: int) -> TaskCreated | None:
        index = bisect.bisect_right(self.versions, version) - 1
        return self.specs[index] if index >= 0 else None


class TaskDefinitions:
    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self.rows_read = 0  # definition rows fetched, for tests and benchmarks

    async def at(self, db: Db, task_id: str, version: int) -> TaskCreated:
        """The task as it stood at that version of its stream."""
        known = self._known.get(task_id)
        if known is not None:
            self._known.move_to_end(task_id)
            if version <= known.read_to:
                return _found(known.at(version), task_id, version)
        read_to = 0 if known is None else known.read_to
        rows = await db.fetch(_READ, task_id, read_to, version, _KINDS)
        self.rows_read += len(rows)
        if not rows or rows[0]["version"] != 1:
            raise LookupError(f"task {task_id} has no TaskCreated before version {version}")
        if known is not None and known.created_id != rows[0]["id"]:
            # Another stream under the same id (this process speaks to another database now).
            del self._known[task_id]
            return await self.at(db, task_id, version)
        state = TaskState(task_id=task_id, spec=None if known is None else known.at(read_to))
        versions: list[int] = []
        specs: list[TaskCreated] = []
        for row in rows:
            if row["version"] <= read_to:
                continue  # version 1, read again only to check it
            state = evolve(state, decode_or_undecodable(row[1], row[2], row[3]))
            if state.spec is not None:
                versions.append(row["version"])
                specs.append(state.spec)
        spec = specs[-1] if specs else state.spec
        if known is None:
            known = self._add(task_id, rows[0]["id"])
        if known.read_to == read_to:  # else another run read on meanwhile: it holds more
            known.versions += versions
            known.specs += specs
            known.read_to = version
        return _found(spec, task_id, version)

    def _add(self, task_id: str, created_id: str) -> _Known:
        known = self._known[task_id] = _Known(created_id)
        while len(self._known) > self._kept:
            self._known.popitem(last=False)
        return known


def _found(spec: TaskCreated | None, task_id: str, version: int) -> TaskCreated:
    if spec is None:
        raise LookupError(f"task {task_id} has no TaskCreated before version {version}")
    return spec
