"""How an executor paces a run's jobs is set from DEPLOYX_EXECUTOR_* and checked where it is set:
a bad value names its setting."""

from __future__ import annotations

import msgspec
import pytest

from services.executor.run import JOBS_IN_FLIGHT, PACE_FREE, PACING, PUBLISH_SLICE, Pacing
from services.infra.settings import from_env


def test_the_pacing_settings_default_to_the_executors_constants() -> None:
    settings = from_env({})
    pacing = Pacing(
        settings.executor_publish_slice,
        settings.executor_jobs_in_flight,
        settings.executor_pace_seconds,
    )
    assert pacing == PACING == (PUBLISH_SLICE, JOBS_IN_FLIGHT, 1.0)
    assert (pacing.free, pacing.stall) == (PACE_FREE, 0.2)


def test_pacing_that_waits_for_every_job_is_possible() -> None:
    settings = from_env(
        {
            "DEPLOYX_EXECUTOR_PUBLISH_SLICE": "1",
            "DEPLOYX_EXECUTOR_JOBS_IN_FLIGHT": "0",
            "DEPLOYX_EXECUTOR_PACE_SECONDS": "600",
        }
    )
    pacing = Pacing(
        settings.executor_publish_slice,
        settings.executor_jobs_in_flight,
        settings.executor_pace_seconds,
    )
    assert (pacing.slice, pacing.in_flight, pacing.free, pacing.stall) == (1, 0, 0, 120.0)


@pytest.mark.parametrize(
    ("variable", "wrong", "field"),
    [
        ("DEPLOYX_EXECUTOR_PUBLISH_SLICE", "0", "executor_publish_slice"),
        ("DEPLOYX_EXECUTOR_JOBS_IN_FLIGHT", "-1", "executor_jobs_in_flight"),
        ("DEPLOYX_EXECUTOR_PACE_SECONDS", "0", "executor_pace_seconds"),
        ("DEPLOYX_EXECUTOR_PACE_SECONDS", "soon", "executor_pace_seconds"),
    ],
)
def test_a_bad_pacing_setting_names_itself(variable: str, wrong: str, field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=field):
        from_env({variable: wrong})
