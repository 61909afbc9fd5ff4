"""The agent's memory of job ids, on disk, so that no job id ever runs twice on a device."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from services.agent.protocol import JobReport

# The finished jobs remembered: older ones are forgotten, a tenth of them at a time, so the file
# stays small (a job is not sent again that long after its run); a job still running never is.
KEEP_JOBS = 10_000
_report = msgspec.json.Decoder(JobReport)


class Journal:
    """A small SQLite file: a job is written down as running before it starts."""

    def __init__(self, path: Path, keep: int = KEEP_JOBS) -> None:
        self._keep, self._prune_every = keep, max(1, keep // 10)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, report BLOB, "
            "seq INTEGER NOT NULL)"
        )

    def close(self) -> None:
        self._db.close()

    def begin(self, job_id: str) -> tuple[bool, JobReport | None]:
        """Claims job_id: (True, None) when it is new, else (False, its report if finished)."""
        seq = self._db.execute("SELECT coalesce(max(seq), 0) + 1 FROM jobs").fetchone()[0]
        inserted = self._db.execute(
            "INSERT OR IGNORE INTO jobs (job_id, report, seq) VALUES (?, NULL, ?)", (job_id, seq)
        ).rowcount
        if inserted:
            if seq % self._prune_every == 0:
                self._db.execute(
                    "DELETE FROM jobs WHERE seq <= ? AND report IS NOT NULL", (seq - self._keep,)
                )
            return True, None
        row = self._db.execute("SELECT report FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return False, _report.decode(row[0]) if row and row[0] is not None else None

    def finish(self, job_id: str, report: JobReport) -> None:
        self._db.execute(
            "UPDATE jobs SET report = ? WHERE job_id = ?", (msgspec.json.encode(report), job_id)
        )

    def unfinished(self) -> list[str]:
        """Jobs that were running when the agent stopped: begun, never finished."""
        return [row[0] for row in self._db.execute("SELECT job_id FROM jobs WHERE report IS NULL")]
