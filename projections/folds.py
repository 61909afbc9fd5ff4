"""Which projections can be folded in memory (projections/fold.py), by name."""

from __future__ import annotations

from datetime import tzinfo

from projections.devices_fold import DevicesFold
from projections.executions_fold import ExecutionsFold
from projections.fold import Fold
from projections.tasks_fold import TasksFold


def fold_for(name: str, zone: tzinfo) -> Fold | None:
    """A fresh fold of the projection called name; None for one without (it is rebuilt with
    its statements). zone: the session's time zone, where date_trunc cuts hours."""
    if name == "tasks":
        return TasksFold()
    if name == "executions":
        return ExecutionsFold(zone)
    if name == "devices":
        return DevicesFold()
    return None
