"""The budget: a cost curve over kept-region counts, the cap it implies, and the keep
threshold calibrated to a mean budget (masks/budget.py), on made-up logits."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynaprune_edge.masks.budget import KEEP_ALL, CostCurve, calibrate, calibrate_threshold, kept_counts

REGIONS = 16
LINEAR = CostCurve(0.05 + 0.95 * np.arange(REGIONS + 1) / REGIONS)  # cost rises with kept regions


def test_the_curve_is_made_non_decreasing_so_the_cap_bounds_every_count_below_it():
    curve = CostCurve([0.1, 0.4, 0.3, 0.6, 0.5])
    assert curve.ratios.tolist() == [0.1, 0.4, 0.4, 0.6, 0.6]
    assert curve.max_regions(0.45) == 2 and curve.max_regions(0.6) == 4 and curve.max_regions(1.0) == 4
    assert curve.max_regions(0.05) == 0, "below the cost of deciding the masks no region may be kept"


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(0, 10_000),
    budget=st.floats(0.06, 0.99),
    cap_share=st.floats(0.0, 1.0),
    ties=st.booleans(),
)
def test_the_calibrated_threshold_meets_the_budget_and_one_step_lower_would_not(seed, budget, cap_share, ties):
    """The mean capped cost at the threshold is within the budget, and keeping the next
    region any sample would add (the next lower logit) overspends: it spends as much of
    the budget as the samples allow."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(40, REGIONS)).astype(np.float32)
    if ties:  # identical regions (a dry sky) score exactly alike
        logits = np.round(logits * 2) / 2
    cap = budget + cap_share * (1 - budget)
    max_regions = LINEAR.max_regions(cap)
    threshold = calibrate_threshold(logits, LINEAR, budget, max_regions)
    spent = LINEAR.of(kept_counts(logits, threshold, max_regions)).mean()
    assert spent <= budget + 1e-12
    below = logits[logits < threshold]
    if below.size:
        more = LINEAR.of(kept_counts(logits, below.max(), max_regions)).mean()
        assert more > budget or more == spent, "a lower threshold that fits would have been chosen"
    else:
        assert threshold == KEEP_ALL or spent == LINEAR.of(np.minimum(REGIONS, max_regions)).mean()


def test_a_budget_that_everything_fits_keeps_every_region_and_one_nothing_fits_keeps_none():
    logits = np.linspace(-3, 3, 5 * REGIONS, dtype=np.float32).reshape(5, REGIONS)
    assert calibrate_threshold(logits, LINEAR, 1.0, REGIONS) == KEEP_ALL
    none = calibrate_threshold(logits, LINEAR, 0.01, REGIONS)
    assert kept_counts(logits, none, REGIONS).tolist() == [0] * 5


def test_the_cap_limits_each_sample_whatever_its_scores():
    logits = np.full((3, REGIONS), 5.0, dtype=np.float32)
    assert kept_counts(logits, 0.0, 6).tolist() == [6, 6, 6]
    assert LINEAR.of(kept_counts(logits, KEEP_ALL, LINEAR.max_regions(0.5))).max() <= 0.5


@pytest.mark.parametrize("budget", [0.3, 0.5])
def test_the_threshold_sits_between_logits_so_unseen_samples_near_it_are_not_decided_by_rounding(budget):
    logits = np.arange(REGIONS * 4, dtype=np.float32).reshape(4, REGIONS)
    threshold = calibrate_threshold(logits, LINEAR, budget, REGIONS)
    assert threshold not in set(logits.ravel().tolist())
    assert threshold % 1 == 0.5


def test_tied_regions_that_straddle_the_budget_are_split_by_a_lower_count_limit():
    """40 identical regions scoring near the top: no threshold splits them, so a threshold
    alone would keep all 40 (over budget) or only the few above them (1.5 % of the cost, as a
    KNMI model measured). The joint calibration limits the count instead and spends the
    budget."""
    regions = 64
    curve = CostCurve(np.arange(regions + 1) / regions)
    rng = np.random.default_rng(0)
    logits = rng.normal(-5, 1, size=(8, regions)).astype(np.float32)
    logits[:, :40] = 3.89  # the dry block
    logits[:, 40:42] = 4.0 + rng.random((8, 2))  # two wet regions above it
    alone = calibrate_threshold(logits, curve, 0.3, regions)
    assert curve.of(kept_counts(logits, alone, regions)).mean() < 0.05
    threshold, limit = calibrate(logits, curve, 0.3, regions)
    spent = curve.of(kept_counts(logits, threshold, limit)).mean()
    assert 0.28 <= spent <= 0.3 and limit < 40


def test_without_ties_the_count_limit_stays_the_cap_s():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(30, REGIONS)).astype(np.float32)
    cap = LINEAR.max_regions(0.6)
    threshold, limit = calibrate(logits, LINEAR, 0.3, cap)
    assert limit == cap and threshold == calibrate_threshold(logits, LINEAR, 0.3, cap)
