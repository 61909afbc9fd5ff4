"""Restore's runs: the fewest tx_ids that keep the log's order with its positions unchanged."""

from __future__ import annotations

from services.infra.restore import runs_of


def test_a_log_in_position_order_is_one_run() -> None:
    assert runs_of([1, 2, 5, 9]) == [1, 1, 1, 1]


def test_each_step_back_in_position_starts_a_run() -> None:
    # Log order (tx_id, position) with commits out of position order: 4 before 3, 7 before 5.
    positions = [1, 2, 4, 3, 7, 5, 6]
    runs = runs_of(positions)
    assert runs == [1, 1, 1, 2, 2, 3, 3]
    # Ordered by (run, position), as readers order (tx_id, position), the log keeps its order.
    assert sorted(zip(runs, positions, strict=True)) == list(zip(runs, positions, strict=True))


def test_no_events_no_runs() -> None:
    assert runs_of([]) == []
