"""The branch planner: the kept-region ranges it compiles are the cheapest for the data."""

import itertools

import numpy as np
import pytest

from dynaprune_edge.export.plan import partition


def expected_cost(ranges, histogram, cost):
    return sum(histogram[n] * cost(hi) for lo, hi in ranges for n in range(lo, hi + 1))


def all_partitions(regions: int, branches: int):
    """Every split of 1..regions into at most `branches` consecutive ranges."""
    for used in range(1, branches + 1):
        for cuts in itertools.combinations(range(1, regions), used - 1):
            bounds = [0, *cuts, regions]
            yield [(bounds[i] + 1, bounds[i + 1]) for i in range(used)]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("branches", [1, 2, 3])
def test_partition_is_optimal_and_covers_every_count(seed, branches):
    rng = np.random.default_rng(seed)
    regions = 7
    histogram = np.concatenate([[0.0], rng.integers(0, 10, regions).astype(float)])
    costs = np.cumsum(rng.uniform(0.1, 1.0, regions + 1))  # more regions computed, more FLOPs
    cost = lambda hi: float(costs[hi])
    ranges = partition(histogram, cost, branches)
    assert len(ranges) <= branches
    assert ranges[0][0] == 1 and ranges[-1][1] == regions
    assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:])), "ranges must tile 1..R"
    best = min(expected_cost(p, histogram, cost) for p in all_partitions(regions, branches))
    assert expected_cost(ranges, histogram, cost) == pytest.approx(best)
