"""Deep offsets into the executions and task lists without passing every row before them.

An OFFSET walks its index entry by entry: the middle page of 1M runs passed 500,000 of them,
that of 100,000 tasks 50,000 (each a heap fetch where the projector's updates left the page
not all-visible). The rows per hour of the list's order column (execution_counts_by_hour and
execution_counts_by_owner_hour of scheduled_for, migrations/0004 and 0005; task_counts_by_hour
and task_counts_by_owner_hour of created_at, 0006) say which hour holds the page's first row
and how many rows come before that hour; the index is then entered at the hour's edge and
walked only inside it. Hours never split a tie in the list's order (the time, then id), so the
page is exactly the one OFFSET gives, as long as the counts are read in the same snapshot as
the rows (projections/snapshot.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from projections.base import Db

# Fewer rows than this to pass from the nearer end: the plain OFFSET is as cheap as the seek.
SEEK_FROM = 5_000
HOUR = timedelta(hours=1)


class Cut(NamedTuple):
    """Walk only the rows on the page's side of `edge`, passing `skip` of them."""

    edge: datetime
    skip: int


# Runs per hour among those with this status and trigger (None: any), $1 and $2: the admin's.
_EVERY_RUN = """
    SELECT hour, sum(n) AS n FROM execution_counts_by_hour
    WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR trigger = $2)
    GROUP BY hour
"""
# An owner's ($3): the runs of their tasks, and those they asked for on tasks not theirs (few:
# counted here, through executions_list_by_requester).
_OWNERS_RUNS = """
    SELECT hour, sum(n) AS n FROM (
        SELECT hour, n FROM execution_counts_by_owner_hour
        WHERE user_id = $3 AND ($1::text IS NULL OR status = $1)
            AND ($2::text IS NULL OR trigger = $2)
        UNION ALL
        SELECT date_trunc('hour', e.scheduled_for, 'UTC'), 1
        FROM executions e LEFT JOIN tasks t ON t.id = e.task_id
        WHERE e.requested_by = $3 AND t.user_id IS DISTINCT FROM $3
            AND ($1::text IS NULL OR e.status = $1) AND ($2::text IS NULL OR e.trigger = $2)
    ) AS counted
    GROUP BY hour
"""


async def hour_cut(
    db: Db,
    owner: str | None,
    status: str | None,
    trigger: str | None,
    skip: int,
    newest_first: bool,
) -> Cut | None:
    """Where to enter the list to pass `skip` rows walking from the newest run (or from the
    oldest when not newest_first), among the runs owner may see (None: every run) with this
    status and trigger (None: any); None when the list has no more than `skip` rows."""
    if owner is None:
        return await _cut(db, _EVERY_RUN, (status, trigger), skip, newest_first)
    return await _cut(db, _OWNERS_RUNS, (status, trigger, owner), skip, newest_first)


_EVERY_TASK = "SELECT hour, n FROM task_counts_by_hour"
_OWNERS_TASKS = "SELECT hour, n FROM task_counts_by_owner_hour WHERE user_id = $1"


async def task_hour_cut(db: Db, owner: str | None, skip: int, newest_first: bool) -> Cut | None:
    """hour_cut for the task list (newest created first) of owner (None: every task),
    without other filters."""
    if owner is None:
        return await _cut(db, _EVERY_TASK, (), skip, newest_first)
    return await _cut(db, _OWNERS_TASKS, (owner,), skip, newest_first)


async def _cut(
    db: Db, hours: str, args: tuple[object, ...], skip: int, newest_first: bool
) -> Cut | None:
    """The cut from `hours` (hour, n), a query of args ($1...); skip follows them."""
    direction = "DESC" if newest_first else "ASC"
    row = await db.fetchrow(
        f"""
        SELECT hour, upto - n AS before FROM (
            SELECT hour, n, sum(n) OVER (ORDER BY hour {direction}) AS upto
            FROM ({hours}) AS hours
        ) AS running
        WHERE upto > ${len(args) + 1} ORDER BY hour {direction} LIMIT 1
        """,
        *args,
        skip,
    )
    if row is None:
        return None
    # Newest first, the rows before the cut are those of the later hours: enter below the
    # hour's end. Oldest first, those of the earlier hours: enter at the hour's start.
    edge = row["hour"] + HOUR if newest_first else row["hour"]
    return Cut(edge=edge, skip=skip - int(row["before"]))
