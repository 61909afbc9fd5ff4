"""The agent's journal on a real SQLite file: a finished job is answered from it after the agent
restarts, and pruning forgets the oldest finished jobs only, keeping the file small."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from services.agent.journal import Journal
from services.agent.protocol import JobOutcome, JobReport


def finished(job_id: str) -> JobReport:
    return JobOutcome(status="success", exit_code=0, stdout=f"output of {job_id}\n").report(job_id)


def run_jobs(journal: Journal, job_ids: list[str]) -> None:
    """Each job as the agent handles a new one: claimed, then finished with its report."""
    for job_id in job_ids:
        assert journal.begin(job_id) == (True, None), job_id
        journal.finish(job_id, finished(job_id))


def rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])


def test_a_finished_job_is_answered_from_the_journal_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "dev-a.jobs.sqlite"
    journal = Journal(path)
    run_jobs(journal, ["e1:dev-a"])
    assert journal.begin("e2:dev-a") == (True, None)  # started, then the agent stopped
    journal.close()

    again = Journal(path)
    assert again.begin("e1:dev-a") == (False, finished("e1:dev-a"))
    assert again.begin("e2:dev-a") == (False, None)  # never run twice, even unfinished
    assert again.unfinished() == ["e2:dev-a"]
    again.close()


def test_pruning_keeps_the_last_jobs_and_forgets_older_finished_ones(tmp_path: Path) -> None:
    path, keep = tmp_path / "dev-a.jobs.sqlite", 50
    journal = Journal(path, keep=keep)
    jobs = [f"e{n}:dev-a" for n in range(1, 3 * keep + 1)]
    for number, job_id in enumerate(jobs, start=1):
        run_jobs(journal, [job_id])
        # Never more than the jobs kept and the tenth between two prunings.
        assert rows(path) <= keep + keep // 10, number
    journal.close()

    journal = Journal(path, keep=keep)
    assert rows(path) == keep
    for job_id in jobs[-keep:]:
        assert journal.begin(job_id) == (False, finished(job_id)), job_id
    # Forgotten: the journal would take it as new (no executor sends a job that old again).
    assert journal.begin(jobs[0]) == (True, None)
    journal.close()


def test_pruning_never_forgets_a_job_still_running(tmp_path: Path) -> None:
    path, keep = tmp_path / "dev-a.jobs.sqlite", 20
    journal = Journal(path, keep=keep)
    assert journal.begin("long:dev-a") == (True, None)
    run_jobs(journal, [f"e{n}:dev-a" for n in range(5 * keep)])
    journal.close()

    journal = Journal(path, keep=keep)
    assert journal.unfinished() == ["long:dev-a"]  # reported interrupted after a crash
    assert journal.begin("long:dev-a") == (False, None)
    assert rows(path) <= keep + keep // 10 + 1
    journal.close()
