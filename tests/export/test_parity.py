"""The parity check: absolute in the model's normalised units for outputs within ±1,
relative beyond, whatever the physical units the graph speaks."""

import numpy as np
import pytest

from dynaprune_edge.data.base import Normalizer
from dynaprune_edge.export.parity import ExportError, check_parity

UNIT = Normalizer([0.0], [1.0])


class OffBy:
    """A session whose forecast is the expected one plus `error`, always from branch 1."""

    def __init__(self, expected: np.ndarray, error: float, normalizer: Normalizer = UNIT) -> None:
        self.outputs = iter(normalizer.denormalize(expected + error))

    def run(self, names, feed):
        return next(self.outputs)[None], np.float32(0), np.int64(1)


@pytest.mark.parametrize(
    "scale, error, passes", [(1.0, 5e-5, True), (1.0, 5e-4, False), (300.0, 5e-3, True), (300.0, 5e-2, False)]
)
def test_parity_is_absolute_for_small_outputs_and_relative_for_large_ones(scale, error, passes):
    expected = np.linspace(-scale, scale, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    x = np.zeros((2, 1), np.float32)
    if passes:
        assert check_parity(OffBy(expected, error), x, expected, "test", UNIT) == {"1": pytest.approx(error, rel=1e-2)}
    else:
        with pytest.raises(ExportError, match="disagrees with PyTorch"):
            check_parity(OffBy(expected, error), x, expected, "test", UNIT)


@pytest.mark.parametrize("error, passes", [(5e-5, True), (5e-4, False)])
def test_a_forecast_in_kelvin_is_held_to_the_same_tolerance_as_a_normalised_one(error, passes):
    """ERA5 temperatures (mean 280 K, std 20 K): 5e-5 of a standard deviation is 1 mK, well
    within float32's reach at 280; the check must neither flag it nor let 10 mK through."""
    kelvin = Normalizer([280.0], [20.0])
    expected = np.linspace(-1, 1, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    x = np.zeros((2, 1), np.float32)
    if passes:
        assert check_parity(OffBy(expected, error, kelvin), x, expected, "test", kelvin)["1"] == pytest.approx(
            error, rel=0.2
        )
    else:
        with pytest.raises(ExportError, match="disagrees with PyTorch"):
            check_parity(OffBy(expected, error, kelvin), x, expected, "test", kelvin)
