"""The counts kept beside the tasks and executions tables (migrations/0001_read_counts.sql,
0004_execution_counts_by_hour.sql, 0005_execution_counts_by_owner_hour.sql,
0006_task_counts_by_hour.sql).

Triggers on the counted tables keep them; a rebuild carries them with the tables it rebuilds
and, where it swapped in only some of the counted tables, counts again from scratch.
"""

from __future__ import annotations

from collections.abc import Iterable

COUNT_TABLES = (
    "task_counts",
    "execution_counts",
    "execution_counts_by_owner",
    "execution_stats_by_owner",
    "execution_totals_by_owner",
    "execution_counts_by_hour",  # migrations/0004: where a deep page of runs starts
    "execution_counts_by_owner_hour",  # 0005: the same in an owner's list
    "task_counts_by_hour",  # 0006: where a deep page of tasks starts
    "task_counts_by_owner_hour",  # 0006: the same in an owner's list
)
COUNTED = frozenset({"tasks", "executions", "execution_stats_hourly"})
# Counts every count table again from the tables the search_path names first.
REFRESH = "SELECT read_counts_refresh()"


def with_counts(tables: Iterable[str]) -> list[str]:
    """The tables, and the count tables if any of them is counted."""
    listed = list(tables)
    return [*listed, *COUNT_TABLES] if COUNTED.intersection(listed) else listed


def counts_partly(tables: Iterable[str]) -> bool:
    """Whether some but not all counted tables are among these: their counts then mix the
    rebuilt tables with live ones that moved on meanwhile, and are counted again."""
    found = COUNTED.intersection(tables)
    return bool(found) and found != COUNTED
