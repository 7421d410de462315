"""analysis/stats.py: the shared statistics, against cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.stats import partial_spearman, partial_spearman_boot


def test_partial_spearman_removes_what_the_control_explains() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=400)
    noise = rng.normal(size=(2, 400))
    x, y = z + 0.3 * noise[0], z + 0.3 * noise[1]  # x and y agree only through z
    assert np.corrcoef(x, y)[0, 1] > 0.8
    assert abs(partial_spearman(x, y, z)) < 0.1
    own = rng.normal(size=400)  # now x carries something of y's beyond z
    assert partial_spearman(z + own, z + own + 0.3 * noise[1], z) > 0.5
    p, lo, hi = partial_spearman_boot(z + own, z + own + 0.3 * noise[1], z, n_boot=200)
    assert lo < p < hi and lo > 0.3


def test_an_unrelated_control_changes_nothing() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    x = rng.normal(size=500)
    y = x + rng.normal(size=500)
    z = rng.normal(size=500)  # independent of both
    assert partial_spearman(x, y, z) == pytest.approx(spearmanr(x, y).statistic, abs=0.05)
