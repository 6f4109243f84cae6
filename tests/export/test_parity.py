"""The parity check: absolute in the graph's units for outputs within ±1, relative beyond."""

import numpy as np
import pytest

from dynaprune_edge.export.parity import ExportError, check_parity


class OffBy:
    """A session whose forecast is the expected one plus `error`, always from branch 1."""

    def __init__(self, expected: np.ndarray, error: float) -> None:
        self.outputs = iter(expected + error)

    def run(self, names, feed):
        return next(self.outputs)[None], np.float32(0), np.int64(1)


@pytest.mark.parametrize("scale, error, passes", [(1.0, 5e-5, True), (1.0, 5e-4, False), (300.0, 5e-3, True), (300.0, 5e-2, False)])
def test_parity_is_absolute_for_small_outputs_and_relative_for_large_ones(scale, error, passes):
    expected = np.linspace(-scale, scale, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    x = np.zeros((2, 1), np.float32)
    if passes:
        assert check_parity(OffBy(expected, error), x, expected, "test") == {"1": pytest.approx(error, rel=1e-2)}
    else:
        with pytest.raises(ExportError, match="disagrees with PyTorch"):
            check_parity(OffBy(expected, error), x, expected, "test")
