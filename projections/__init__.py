"""Read tables built from the log: each projection's apply() and the queries the API serves."""

from projections.base import Projection
from projections.devices import DevicesProjection
from projections.executions import ExecutionsProjection
from projections.tasks import TasksProjection

PROJECTIONS: tuple[Projection, ...] = (  # type: ignore[assignment]
    TasksProjection(),
    ExecutionsProjection(),
    DevicesProjection(),
)

__all__ = ["PROJECTIONS", "Projection"]
