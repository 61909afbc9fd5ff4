"""Per-device token buckets, through the clock seam: a burst at once, then the rate."""

from __future__ import annotations

import pytest

from services.infra.rate_limit import TokenBuckets


def taken(buckets: TokenBuckets, key: str, now: float, times: int) -> int:
    return sum(buckets.take(key, now) for _ in range(times))


def test_a_burst_passes_at_once_and_the_rest_waits_for_the_rate() -> None:
    buckets = TokenBuckets(rate=10, burst=5)
    assert taken(buckets, "dev-a", 0.0, 8) == 5
    assert not buckets.take("dev-a", 0.05)  # half a token has come back
    assert buckets.take("dev-a", 0.1)  # one
    assert not buckets.take("dev-a", 0.1)
    assert taken(buckets, "dev-a", 1.1, 20) == 5  # ten came back, at most the burst is kept


def test_a_refusal_takes_nothing() -> None:
    buckets = TokenBuckets(rate=1, burst=1)
    assert buckets.take("dev-a", 0.0)
    assert taken(buckets, "dev-a", 0.5, 100) == 0
    assert buckets.take("dev-a", 1.0)


def test_one_device_over_its_rate_leaves_others_theirs() -> None:
    buckets = TokenBuckets(rate=1, burst=3)
    assert taken(buckets, "flood", 0.0, 1000) == 3
    assert taken(buckets, "dev-b", 0.0, 3) == 3


def test_the_longest_silent_device_is_forgotten_past_the_bound_and_comes_back_full() -> None:
    buckets = TokenBuckets(rate=1, burst=2, keys=2)
    assert taken(buckets, "dev-a", 0.0, 2) == 2
    assert taken(buckets, "dev-b", 0.0, 2) == 2
    assert buckets.take("dev-c", 0.0)  # a third device: dev-a, heard from first, is forgotten
    assert taken(buckets, "dev-a", 0.0, 3) == 2  # full again; now dev-b is forgotten
    assert taken(buckets, "dev-c", 0.0, 3) == 1  # kept: one of its two was taken
    assert taken(buckets, "dev-b", 0.0, 3) == 2


def test_a_clock_that_steps_back_gives_nothing_twice() -> None:
    buckets = TokenBuckets(rate=1, burst=1)
    assert buckets.take("dev-a", 10.0)
    assert not buckets.take("dev-a", 5.0)
    assert not buckets.take("dev-a", 10.5)
    assert buckets.take("dev-a", 11.0)


@pytest.mark.parametrize(
    ("rate", "burst", "keys", "message"),
    [
        (0, 1, 1, "rate must be above 0, not 0"),
        (1, 0.5, 1, "burst must be at least 1, not 0.5"),
        (1, 1, 0, "keys must be at least 1, not 0"),
    ],
)
def test_bounds_that_would_refuse_everything_are_refused(
    rate: float, burst: float, keys: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TokenBuckets(rate=rate, burst=burst, keys=keys)
