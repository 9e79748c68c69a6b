"""The e2e data plane's traffic split: the pure parts, densely.

The e2e tier trusts the load generator to send each release the share the cluster's ready
pods give it; if the arithmetic were off, a canary test would measure the load generator
instead of the operator. So: largest remainder exactly, running totals that do not drift,
weights per model from ready pods, and fault knobs parsed strictly.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from itertools import islice, permutations

import pytest
from e2e.dataplane import (
    ANNOTATION_ACCURACY_DROP,
    ANNOTATION_ERROR_RATE,
    ANNOTATION_LATENCY,
    Apportioner,
    Knobs,
    ReleaseCounts,
    ReleaseState,
    ReleaseView,
    Snapshot,
    parse_knobs,
    ready_weights,
    split,
)

# --- split -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "n", "expected"),
    [
        ({"v1": 3, "v2": 1}, 40, {"v1": 30, "v2": 10}),
        ({"v1": 3, "v2": 1}, 4, {"v1": 3, "v2": 1}),
        ({"v1": 3, "v2": 1}, 10, {"v1": 8, "v2": 2}),  # 7.5 / 2.5: tie to the larger weight
        ({"v1": 3, "v2": 1}, 1, {"v1": 1, "v2": 0}),
        ({"v1": 1, "v2": 1, "v3": 1}, 10, {"v1": 4, "v2": 3, "v3": 3}),
        ({"v1": 1, "v2": 1, "v3": 1}, 2, {"v1": 1, "v2": 1, "v3": 0}),
        ({"v1": 0.1, "v2": 0.2, "v3": 0.7}, 10, {"v1": 1, "v2": 2, "v3": 7}),
        ({"v1": 99, "v2": 1}, 10, {"v1": 10, "v2": 0}),
        ({"v1": 95, "v2": 5}, 10, {"v1": 10, "v2": 0}),  # 9.5 / 0.5: tie to the larger
        ({"v1": 94, "v2": 6}, 10, {"v1": 9, "v2": 1}),
        ({"v1": 1, "v2": 2, "v3": 3, "v4": 4}, 7, {"v1": 1, "v2": 1, "v3": 2, "v4": 3}),
        ({"only": 5}, 17, {"only": 17}),
        ({"v1": 2, "v2": 0}, 5, {"v1": 5, "v2": 0}),
    ],
)
def test_split_examples(weights: dict[str, float], n: int, expected: dict[str, int]) -> None:
    assert split(weights, n) == expected


def test_split_of_nothing() -> None:
    assert split({}, 10) == {}
    assert split({"v1": 3, "v2": 1}, 0) == {"v1": 0, "v2": 0}


def test_no_ready_pod_means_nothing_is_sent() -> None:
    assert split({"v1": 0, "v2": 0.0}, 10) == {"v1": 0, "v2": 0}


def test_zero_weight_never_gets_a_request() -> None:
    for n in range(50):
        assert split({"a": 0, "b": 1, "c": 1, "d": 1}, n)["a"] == 0


def test_keys_keep_their_order() -> None:
    assert list(split({"z": 1, "a": 0, "m": 2}, 5)) == ["z", "a", "m"]


def test_equal_weights_tie_to_the_key_that_sorts_first() -> None:
    assert split({"b": 1, "a": 1, "c": 1}, 1) == {"b": 0, "a": 1, "c": 0}
    assert split({"b": 1, "a": 1, "c": 1}, 2) == {"b": 1, "a": 1, "c": 0}


def test_percentages_and_pod_counts_split_alike() -> None:
    for n in range(0, 101):
        assert split({"v1": 75.0, "v2": 25.0}, n) == split({"v1": 3, "v2": 1}, n)
        assert split({"v1": 66.66666666666667, "v2": 33.333333333333336}, n) == split(
            {"v1": 2, "v2": 1}, n
        )


def test_large_n_is_exact() -> None:
    assert split({"a": 1, "b": 1, "c": 1}, 10**6) == {"a": 333_334, "b": 333_333, "c": 333_333}
    assert split({"a": 1, "b": 10**9}, 10**9 + 1) == {"a": 1, "b": 10**9}


@pytest.mark.parametrize("seed", range(40))
def test_split_properties(seed: int) -> None:
    rnd = random.Random(seed)
    keys = [f"r{i}" for i in range(rnd.randint(1, 8))]
    pool = [0, 0.0, 1, 2, 3, 0.5, 1 / 3, 7.25, 12.5, 100, 1e-9]
    weights = {k: rnd.choice(pool) for k in keys}
    n = rnd.randint(0, 500)
    got = split(weights, n)
    total = sum(Fraction(w) for w in weights.values())
    assert set(got) == set(weights)
    assert all(isinstance(v, int) and v >= 0 for v in got.values())
    if total == 0:
        assert set(got.values()) <= {0}
        return
    assert sum(got.values()) == n
    for k, w in weights.items():
        quota = Fraction(w) * n / total
        # Quota property: each part is its exact quota rounded down or up.
        assert math.floor(quota) <= got[k] <= math.ceil(quota), (k, quota, got)
    # Deterministic, whatever the order the weights arrive in.
    items = list(weights.items())
    for order in islice(permutations(items), 24):
        assert split(dict(order), n) == got


def test_split_ranks_remainders_exactly() -> None:
    # In floats 0.1 + 0.2 != 0.3: exact fractions decide the seat, not rounding noise.
    weights = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
    assert split(weights, 10) == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert sum(split(weights, 7).values()) == 7


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan, math.inf, -math.inf])
def test_split_refuses_bad_weights(bad: float) -> None:
    with pytest.raises(ValueError, match="'v2'"):
        split({"v1": 1, "v2": bad}, 10)


@pytest.mark.parametrize("bad", ["3", None, True, [1]])
def test_split_refuses_weights_that_are_not_numbers(bad: object) -> None:
    with pytest.raises(TypeError, match="'v1'"):
        split({"v1": bad}, 10)  # type: ignore[dict-item]


@pytest.mark.parametrize(("n", "error"), [(-1, ValueError), (2.0, TypeError), (True, TypeError)])
def test_split_refuses_bad_counts(n: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        split({"v1": 1}, n)  # type: ignore[arg-type]


# --- Apportioner -------------------------------------------------------------------------


def test_first_take_is_the_plain_split() -> None:
    for n in range(30):
        assert Apportioner().take({"v1": 3, "v2": 1}, n) == split({"v1": 3, "v2": 1}, n)


def test_small_ticks_rotate_instead_of_rounding_the_same_way() -> None:
    a = Apportioner()
    weights = {"a": 1, "b": 1, "c": 1, "d": 1}
    ticks = [a.take(weights, 3) for _ in range(4)]
    assert [sum(t.values()) for t in ticks] == [3, 3, 3, 3]
    totals = {k: sum(t[k] for t in ticks) for k in weights}
    assert totals == {"a": 3, "b": 3, "c": 3, "d": 3}


def test_a_small_canary_gets_its_share_in_the_long_run() -> None:
    a = Apportioner()
    got = {"stable": 0, "canary": 0}
    for _ in range(1000):  # 4 requests per tick, 1 % canary: 0.04 per tick
        for k, v in a.take({"stable": 99, "canary": 1}, 4).items():
            got[k] += v
    assert got == {"stable": 3960, "canary": 40}


@pytest.mark.parametrize("seed", range(40))
def test_running_totals_stay_within_two_requests_of_the_exact_share(seed: int) -> None:
    rnd = random.Random(seed)
    keys = [f"r{i}" for i in range(rnd.randint(1, 6))]
    weights = {k: rnd.choice([0, 1, 2, 3, 5, 0.01, 0.3, 7.5, 100]) for k in keys}
    total = sum(Fraction(w) for w in weights.values())
    a = Apportioner()
    sent = dict.fromkeys(keys, 0)
    exact = dict.fromkeys(keys, Fraction(0))
    for _ in range(300):
        n = rnd.randint(0, 9)
        got = a.take(weights, n)
        assert sum(got.values()) == (n if total else 0)
        for k in keys:
            sent[k] += got[k]
            exact[k] += Fraction(weights[k]) * n / total if total else 0
            assert abs(sent[k] - exact[k]) < 2, (k, sent, exact)


def test_a_release_that_loses_its_pods_stops_at_once_and_restarts_fresh() -> None:
    a = Apportioner()
    a.take({"v1": 1, "v2": 1}, 3)  # v2 is now owed half a request
    assert a.take({"v1": 1, "v2": 0}, 5) == {"v1": 5, "v2": 0}
    assert a.take({"v1": 1}, 5) == {"v1": 5}
    assert a.take({"v1": 1, "v2": 1}, 2) == {"v1": 1, "v2": 1}


def test_departed_credit_is_spread_so_every_tick_still_sums_to_n() -> None:
    a = Apportioner()
    a.take({"a": 1, "b": 1, "c": 1}, 2)
    for n in range(12):
        assert sum(a.take({"a": 1, "b": 1}, n).values()) == n


def test_apportioner_with_no_weight_sends_nothing() -> None:
    a = Apportioner()
    assert a.take({"v1": 0}, 10) == {"v1": 0}
    assert a.take({}, 10) == {}
    assert a.take({"v1": 1}, 3) == {"v1": 3}


def test_apportioner_refuses_what_split_refuses() -> None:
    with pytest.raises(ValueError):
        Apportioner().take({"v1": -1}, 1)
    with pytest.raises(ValueError):
        Apportioner().take({"v1": 1}, -1)


# --- weights from ready pods -------------------------------------------------------------


def _state(release: str, ready: int, model: str = "fraud") -> ReleaseState:
    return ReleaseState(model=model, release=release, version=release[-1], ready=ready)


def test_weights_are_shares_of_the_models_ready_pods() -> None:
    states = [_state("fraud-v1", 3), _state("fraud-v2", 1)]
    assert ready_weights(states) == {"fraud-v1": 75.0, "fraud-v2": 25.0}


def test_each_model_splits_on_its_own() -> None:
    states = [
        _state("fraud-v1", 1),
        _state("fraud-v2", 1),
        _state("churn-v7", 4, model="churn"),
        _state("churn-v8", 0, model="churn"),
    ]
    assert ready_weights(states) == {
        "fraud-v1": 50.0,
        "fraud-v2": 50.0,
        "churn-v7": 100.0,
        "churn-v8": 0.0,
    }


def test_a_model_without_ready_pods_has_zero_everywhere() -> None:
    assert ready_weights([_state("fraud-v1", 0), _state("fraud-v2", 0)]) == {
        "fraud-v1": 0.0,
        "fraud-v2": 0.0,
    }
    assert ready_weights([]) == {}


def test_negative_ready_counts_as_zero() -> None:
    assert ready_weights([_state("fraud-v1", -1), _state("fraud-v2", 2)]) == {
        "fraud-v1": 0.0,
        "fraud-v2": 100.0,
    }


# --- fault knobs -------------------------------------------------------------------------


def test_knobs_from_annotations() -> None:
    knobs, problems = parse_knobs(
        {
            ANNOTATION_LATENCY: "150",
            ANNOTATION_ERROR_RATE: "0.5",
            ANNOTATION_ACCURACY_DROP: "0.25",
            "unrelated.example/key": "x",
        }
    )
    assert knobs == Knobs(latency_ms=150.0, error_rate=0.5, accuracy_drop=0.25)
    assert problems == ()


def test_no_annotations_no_faults() -> None:
    assert parse_knobs(None) == (Knobs(), ())
    assert parse_knobs({}) == (Knobs(), ())
    assert Knobs().describe() == "no faults"


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        (ANNOTATION_ERROR_RATE, "half"),
        (ANNOTATION_ERROR_RATE, "1.5"),
        (ANNOTATION_ERROR_RATE, "-0.1"),
        (ANNOTATION_ERROR_RATE, "nan"),
        (ANNOTATION_ACCURACY_DROP, "2"),
        (ANNOTATION_LATENCY, "-5"),
        (ANNOTATION_LATENCY, "inf"),
        (ANNOTATION_LATENCY, "1e9"),
    ],
)
def test_bad_knobs_are_ignored_with_a_reason(key: str, raw: str) -> None:
    knobs, problems = parse_knobs({key: raw, ANNOTATION_LATENCY + "x": "1"})
    assert knobs == Knobs()
    assert len(problems) == 1
    assert key in problems[0]
    assert repr(raw) in problems[0]


def test_knob_flags_are_always_all_passed() -> None:
    # Explicit flags win over INJECT_* variables a developer may have exported.
    assert Knobs(error_rate=0.5).args() == [
        "--inject-latency-ms",
        "0.0",
        "--inject-error-rate",
        "0.5",
        "--inject-accuracy-drop",
        "0.0",
    ]
    assert Knobs(error_rate=0.5, latency_ms=200).describe() == "latency_ms=200 error_rate=0.5"


# --- reports -----------------------------------------------------------------------------


def test_counts_and_snapshot_line() -> None:
    counts = ReleaseCounts(predict={200: 90, 500: 8, 0: 2}, feedback={200: 90}, unserved=3)
    assert counts.sent == 100
    assert counts.errors == 10
    view = ReleaseView(
        model="fraud",
        release="fraud-v2",
        version="2",
        ready=1,
        weight=25.0,
        process="serving",
        pid=123,
        port=4567,
        knobs=Knobs(error_rate=0.5),
        counts=counts,
    )
    snap = Snapshot(elapsed=12.34, releases=(view,))
    assert snap.release("fraud-v2") is view
    assert snap.release("nope") is None
    assert snap.line() == ("t=12.3s fraud-v2 25% pods=1 serving sent=100 err=10 unserved=3 shed=0")
    assert Snapshot(elapsed=0.0, releases=()).line() == "t=0.0s no releases"
