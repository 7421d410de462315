"""analysis/stats.py: the shared statistics, against cases whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import stats
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


def test_percentile_within() -> None:
    pop = [0.1, 0.2, 0.3, 0.4]
    assert stats.percentile_within(0.05, pop) == 0
    assert stats.percentile_within(0.5, pop) == 100
    assert stats.percentile_within(0.25, pop) == 50
    assert stats.percentile_within(0.3, pop) == pytest.approx(62.5)  # a tie counts half
    with pytest.raises(ValueError):
        stats.percentile_within(0.3, [])


def test_paired_diff_to_median() -> None:
    rng = np.random.default_rng(1)
    seed_effect = np.array([0.0, 0.05, -0.04])  # shared by every arm: pairing must remove it
    pop = 0.80 + seed_effect + rng.normal(0, 0.002, size=(25, 3))
    arm = np.median(pop, axis=0) + 0.01
    d, lo, hi = stats.paired_diff_to_median(arm, pop)
    assert d == pytest.approx(0.01)
    assert lo < 0.01 < hi and hi - lo < 0.01  # narrow although seeds differ by 9 points
    d0, lo0, hi0 = stats.paired_diff_to_median(np.median(pop, axis=0), pop)
    assert d0 == pytest.approx(0.0) and lo0 <= 0 <= hi0
    with pytest.raises(ValueError):
        stats.paired_diff_to_median(arm[:2], pop)


def test_paired_diff_to_median_with_pooled_noise() -> None:
    rng = np.random.default_rng(2)
    pop = 0.80 + np.array([0.0, 0.05]) + rng.normal(0, 0.02, size=(24, 2))
    arm = np.median(pop, axis=0) - 0.03
    d, lo, hi = stats.paired_diff_to_median(arm, pop, noise_sd=0.001)
    d2, lo2, hi2 = stats.paired_diff_to_median(arm, pop, noise_sd=0.05)
    assert d == d2 == pytest.approx(-0.03)
    assert lo2 < lo < -0.03 < hi < hi2  # more noise, a wider interval around the same point


def test_paired_noise_removes_candidate_and_seed_effects() -> None:
    cand = np.array([0.70, 0.75, 0.80, 0.72])[:, None]
    seed = np.array([0.0, 0.05, -0.03, 0.02])[None, :]
    sigma, df = stats.paired_noise(cand + seed)
    assert sigma == pytest.approx(0.0, abs=1e-12) and df == 9
    noisy = cand + seed + np.random.default_rng(0).normal(0, 0.01, size=(4, 4))
    sigma, _ = stats.paired_noise(noisy)
    assert 0.003 < sigma < 0.02
    with pytest.raises(ValueError):
        stats.paired_noise(np.array([[0.7, np.nan], [0.8, 0.9]]))
    # 4 seeds halve the half-width of 1 seed's; the t quantile widens it for few df
    assert stats.paired_halfwidth(0.01, 4, 1000) == pytest.approx(1.96 * 0.01 * math.sqrt(0.5), rel=1e-2)
    assert stats.paired_halfwidth(0.01, 4, 3) > stats.paired_halfwidth(0.01, 4, 1000)
    n = stats.seeds_for_halfwidth(0.018, 24, 0.01)
    assert stats.paired_halfwidth(0.018, n, 24) <= 0.01 < stats.paired_halfwidth(0.018, n - 1, 24)


def test_t_interval_uses_the_pair_own_scatter() -> None:
    # differences +1, +3 pt: mean 2, sd sqrt(2) pt, t(1) = 12.71
    m, lo, hi = stats.t_interval(np.array([0.81, 0.83]) - np.array([0.80, 0.80]))
    assert m == pytest.approx(0.02) and hi - m == pytest.approx(12.706 * 0.01 * math.sqrt(2) / math.sqrt(2), rel=1e-3)
    assert m - lo == pytest.approx(hi - m)
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.02, 16)
    steady, noisy = a - 0.01 + rng.normal(0, 0.002, 16), a - 0.01 + rng.normal(0, 0.02, 16)
    _, lo_s, hi_s = stats.t_interval(steady - a)
    _, lo_n, hi_n = stats.t_interval(noisy - a)
    assert hi_s < 0 and hi_s - lo_s < (hi_n - lo_n) / 4  # a steady pair resolves 1 pt, a noisy one does not
    with pytest.raises(ValueError):
        stats.t_interval(np.array([0.1]))
    n = stats.seeds_for_paired_t(0.015, 0.01)
    from scipy.stats import t

    assert t.ppf(0.975, n - 1) * 0.015 / math.sqrt(n) <= 0.01 < t.ppf(0.975, n - 2) * 0.015 / math.sqrt(n - 1)
    assert stats.seeds_for_paired_t(0.0, 0.01) == 2


def test_paired_diff_and_spearman() -> None:
    a = np.array([0.80, 0.85, 0.75, 0.82])
    d, lo, hi = stats.paired_diff(a + 0.01, a)
    assert d == pytest.approx(0.01) and lo == pytest.approx(0.01) and hi == pytest.approx(0.01)
    d, lo, hi = stats.paired_diff(np.array([0.0, 0.1]), np.zeros(2))
    assert d == pytest.approx(0.05) and lo == pytest.approx(0.0) and hi == pytest.approx(0.1)
    x = np.arange(12.0)
    assert stats.spearman(x, x ** 3) == pytest.approx(1.0)
    assert stats.spearman(x, -x) == pytest.approx(-1.0)
    r, lo, hi = stats.spearman_boot(x, x + np.random.default_rng(0).normal(0, 3, 12))
    assert lo <= r <= hi and -1 <= lo and hi <= 1


def test_additive_effects_match_row_means_on_a_complete_table_and_see_through_missing_seeds() -> None:
    rng = np.random.default_rng(0)
    mu, beta = rng.normal(size=6), rng.normal(size=9)
    x = mu[:, None] + beta[None, :]
    full = stats.additive_effects(x)
    assert np.allclose(full - full[0], mu - mu[0])
    x[2:, 4:] = np.nan  # rows 2-5 only on seeds 0-3: without noise the fit still recovers every effect
    part = stats.additive_effects(x)
    assert np.allclose(part - part[0], mu - mu[0])
    # the plain mean of row 0 over its 9 seeds would be off by the easier or harder seeds 4-8
    assert abs((np.nanmean(x[0]) - np.nanmean(x[2])) - (mu[0] - mu[2])) > 1e-3


def test_diff_to_median_additive_uses_each_arm_own_scatter_and_seeds() -> None:
    rng = np.random.default_rng(1)
    n_rand, seeds = 24, 40
    seed_fx = rng.normal(0, 0.02, size=seeds)
    rand = 0.77 + rng.normal(0, 0.01, size=(n_rand, 1)) + seed_fx + rng.normal(0, 0.015, size=(n_rand, seeds))
    quiet = 0.74 + seed_fx + rng.normal(0, 0.01, size=seeds)
    noisy = 0.74 + seed_fx + rng.normal(0, 0.04, size=seeds)
    noisy_short = noisy.copy()
    noisy_short[10:] = np.nan
    x = np.vstack([quiet, noisy, noisy_short, rand])
    res = stats.diff_to_median_additive(x, [[0], [1], [2]], list(range(3, 3 + n_rand)), n_boot=1000,
                                      rng=np.random.default_rng(2))
    (pq, lq, hq), (pn, ln, hn), (ps, ls, hs) = res
    assert lq < pq < hq and ln < pn < hn and ls < ps < hs
    assert abs(pq - (0.74 - 0.77)) < 0.01  # about 3 points below the random median
    assert (hn - ln) > 1.5 * (hq - lq)  # the noisy arm's own scatter widens its interval
    assert (hs - ls) > 1.15 * (hn - ln)  # and fewer seeds widen it further
    # the random population on seeds 0-12 only, and seeds 13-39 easier by 5 points: the seed effects there
    # come from the other rows, so the arm is not credited with its easier seeds
    x[3:, 13:] = np.nan
    x[:, 13:] += 0.05
    (pq2, lq2, hq2), *_ = stats.diff_to_median_additive(x, [[0], [1], [2]], list(range(3, 3 + n_rand)), n_boot=500,
                                                      rng=np.random.default_rng(2))
    assert lq2 < pq2 < hq2 and abs(pq2 - (0.74 - 0.77)) < 0.015
    naive = np.nanmean(x[0]) - np.median(np.nanmean(x[3:], axis=1))
    assert abs(naive - (0.74 - 0.77)) > 0.02


def test_holm_multiplies_the_ith_smallest_by_m_minus_i_and_keeps_the_order() -> None:
    # m = 4: 0.01 * 4 = 0.04, 0.02 * 3 = 0.06, 0.03 * 2 = 0.06, 0.5 * 1 = 0.5; input order kept
    assert stats.holm([0.5, 0.02, 0.01, 0.03]) == pytest.approx([0.5, 0.06, 0.04, 0.06])
    # step-down monotone: a later (larger) p never gets a smaller adjusted value than an earlier one
    assert stats.holm([0.01, 0.011]) == pytest.approx([0.02, 0.02])
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.04]) == pytest.approx([0.04])  # a family of one is not adjusted


def test_t_pvalue_is_the_two_sided_paired_t() -> None:
    d = np.array([0.01, 0.02, 0.03])  # mean 0.02, sd 0.01, t = 0.02 / (0.01 / sqrt 3) = 3.46 on 2 df
    assert stats.t_pvalue(d) == pytest.approx(0.0742, abs=1e-3)
    assert stats.t_pvalue(-d) == pytest.approx(stats.t_pvalue(d))
    assert stats.t_pvalue(np.array([0.01, 0.01])) == 0.0
    with pytest.raises(ValueError):
        stats.t_pvalue(np.array([0.01]))
