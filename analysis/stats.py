"""Statistics the analysis scripts share (zoo, scores, converged, strategies), on scipy.stats where it
has them: t quantiles and intervals, rank correlations; bootstraps keep numpy's seeded generator so the
committed read-outs reproduce. Pure functions, unit-tested in tests/test_stats.py."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats


def partial_spearman(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> float:
    """Spearman correlation of x and y with z held fixed: the Pearson partial correlation of the ranks,
    r_xy.z = (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)). What a score adds beyond z (e.g. the
    parameter count)."""
    ranks = np.column_stack([stats.rankdata(a) for a in (x, y, z)])
    if (ranks.std(axis=0) == 0).any():  # a constant input: no rank correlation is defined
        return float("nan")
    r = np.corrcoef(ranks, rowvar=False)
    rxy, rxz, ryz = r[0, 1], r[0, 2], r[1, 2]
    den = math.sqrt(max((1 - rxz ** 2) * (1 - ryz ** 2), 0.0))
    return float("nan") if den == 0 or math.isnan(den) else float((rxy - rxz * ryz) / den)


def partial_spearman_boot(x: Sequence[float], y: Sequence[float], z: Sequence[float], n_boot: int = 2000,
                          rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """`partial_spearman` with a bootstrap 95% interval over the items (resampled with replacement)."""
    x, y, z = (np.asarray(a, dtype=float) for a in (x, y, z))
    rng = rng or np.random.default_rng(0)
    boots = [partial_spearman(x[i], y[i], z[i]) for i in (rng.integers(0, x.size, x.size) for _ in range(n_boot))]
    boots = [b for b in boots if not math.isnan(b)]
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (math.nan, math.nan)
    return partial_spearman(x, y, z), float(lo), float(hi)


def percentile_within(value: float, population: Sequence[float]) -> float:
    """Percent of `population` below `value` (ties count half): 0 = worst, 100 = best."""
    pop = np.asarray(population, dtype=float)
    if pop.size == 0:
        raise ValueError("empty population")
    return float(100.0 * (np.sum(pop < value) + 0.5 * np.sum(pop == value)) / pop.size)


def paired_diff_to_median(arm: np.ndarray, population: np.ndarray, n_boot: int = 4000,
                          rng: np.random.Generator | None = None,
                          noise_sd: float | None = None) -> tuple[float, float, float]:
    """Mean over seeds of arm[s] - median_c(population[c, s]), with a bootstrap 95% interval.

    `arm` has one accuracy per seed (S,), `population` one row per random candidate (C, S), paired by
    seed. Without `noise_sd` the bootstrap resamples seeds and candidates (both are samples), keeping the
    seed pairing. With `noise_sd` (one unit's noise after pairing, pooled over the zoo: sturdier than
    resampling 2 seeds) it resamples candidates and adds the arm's noise, N(0, noise_sd^2 / S).
    """
    arm = np.asarray(arm, dtype=float)
    pop = np.asarray(population, dtype=float)
    if pop.ndim != 2 or pop.shape[1] != arm.shape[0]:
        raise ValueError(f"population must be (candidates, seeds) = (*, {arm.shape[0]}), got {pop.shape}")
    rng = rng or np.random.default_rng(0)
    point = float(np.mean(arm - np.median(pop, axis=0)))
    s, c = arm.shape[0], pop.shape[0]
    si = rng.integers(0, s, size=(n_boot, s)) if noise_sd is None else np.tile(np.arange(s), (n_boot, 1))
    ci = rng.integers(0, c, size=(n_boot, c))
    noise = np.zeros(n_boot) if noise_sd is None else rng.normal(0.0, noise_sd / math.sqrt(s), size=n_boot)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        sub = pop[ci[b]][:, si[b]]
        boots[b] = np.mean(arm[si[b]] - np.median(sub, axis=0)) + noise[b]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return point, float(lo), float(hi)


def additive_effects(acc: np.ndarray) -> np.ndarray:
    """Candidate effects mu (C,) of the least-squares fit acc[c, s] = mu[c] + beta[s] over the trained
    (non-NaN) cells of `acc` (C, S). The seed effects absorb how easy each seed's data is, so a candidate
    trained on more seeds than the random population is still compared with it on one scale."""
    x = np.asarray(acc, dtype=float)
    n_c = x.shape[0]
    seen = ~np.isnan(x)
    n = seen.astype(float)
    y = np.where(seen, x, 0.0)
    # normal equations of the (C + S)-parameter fit; dropping beta[0] (= 0) fixes the level
    a = np.block([[np.diag(n.sum(axis=1)), n], [n.T, np.diag(n.sum(axis=0))]])[:, np.r_[0:n_c, n_c + 1:n_c + x.shape[1]]]
    rhs = np.concatenate([y.sum(axis=1), y.sum(axis=0)])
    return np.linalg.lstsq(a, rhs, rcond=None)[0][:n_c]


def diff_to_median_additive(acc: np.ndarray, arms: Sequence[Sequence[int]], randoms: Sequence[int],
                            n_boot: int = 4000, rng: np.random.Generator | None = None
                            ) -> list[tuple[float, float, float]]:
    """Each arm's effect (the mean of its rows' `additive_effects`) minus the median effect of the random
    rows, with a bootstrap 95% interval: random candidates resampled, and seeds resampled within each
    group of seeds that has the same candidates trained (the design stays the same), so each arm's
    interval comes from its own scatter over its own seeds, not from a pooled sigma."""
    x = np.asarray(acc, dtype=float)
    rows_r = np.asarray(randoms, dtype=int)
    fixed = np.setdiff1d(np.arange(x.shape[0]), rows_r)
    pos = {int(r): i for i, r in enumerate(fixed)}  # arm rows are never resampled: their place in the sub-table

    def stats(sub: np.ndarray) -> np.ndarray:
        mu = additive_effects(sub)
        med = np.median(mu[len(fixed):])
        return np.array([np.mean(mu[[pos[r] for r in arm]]) - med for arm in arms])

    point = stats(np.vstack([x[fixed], x[rows_r]]))
    rng = rng or np.random.default_rng(0)
    pattern: dict[tuple[bool, ...], list[int]] = {}
    for j in range(x.shape[1]):
        pattern.setdefault(tuple(np.isnan(x[:, j])), []).append(j)
    groups = [np.asarray(g) for g in pattern.values()]
    boots = np.empty((n_boot, len(arms)))
    for b in range(n_boot):
        cols = np.concatenate([rng.choice(g, size=g.size) for g in groups])
        rows = np.concatenate([fixed, rng.choice(rows_r, size=rows_r.size)])
        boots[b] = stats(x[rows][:, cols])
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    return [(float(p_), float(l_), float(h_)) for p_, l_, h_ in zip(point, lo, hi)]


def paired_noise(acc: np.ndarray) -> tuple[float, int]:
    """One unit's noise after pairing: the residual sd of candidate + seed effects, and its degrees of
    freedom. `acc` is (candidates, seeds), complete."""
    x = np.asarray(acc, dtype=float)
    c, s = x.shape
    if c < 2 or s < 2 or np.isnan(x).any():
        raise ValueError(f"need a complete (candidates >= 2, seeds >= 2) table, got {x.shape}")
    r = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    df = (c - 1) * (s - 1)
    return float(np.sqrt((r ** 2).sum() / df)), df


def seeds_for_halfwidth(sigma: float, df: int, target: float, limit: int = 10_000) -> int:
    """The fewest paired seeds whose `paired_halfwidth` is at most `target` (`limit` if none is)."""
    return next((s for s in range(2, limit) if paired_halfwidth(sigma, s, df) <= target), limit)


def paired_halfwidth(sigma: float, seeds: int, df: int) -> float:
    """95% half-width of the difference of two candidates' `seeds`-seed means, paired, noise `sigma`
    pooled with `df` degrees of freedom (t quantile)."""
    return float(stats.t.ppf(0.975, df) * sigma * math.sqrt(2.0 / seeds))


def t_interval(d: np.ndarray) -> tuple[float, float, float]:
    """Mean of one pair's seed-wise differences `d` (S,) with the t interval from their own scatter
    (S - 1 df): unlike the pooled sigma, it does not assume every pair is equally noisy."""
    d = np.asarray(d, dtype=float)
    if d.ndim != 1 or d.size < 2:
        raise ValueError("need a 1-d array of at least 2 seed-wise differences")
    if d.std() == 0:  # scipy's interval is undefined (nan) for a constant sample: it is the point
        return float(d.mean()), float(d.mean()), float(d.mean())
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    return float(d.mean()), float(ci.low), float(ci.high)


def t_pvalue(d: np.ndarray) -> float:
    """Two-sided p-value of the paired t test that the seed-wise differences `d` (S,) have mean 0
    (S - 1 df); 0 for a constant non-zero sample, 1 for an all-zero one."""
    d = np.asarray(d, dtype=float)
    if d.ndim != 1 or d.size < 2:
        raise ValueError("need a 1-d array of at least 2 seed-wise differences")
    if d.std() == 0:
        return 1.0 if d.mean() == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate):
    the i-th smallest of m is multiplied by m - i (i from 0), made non-decreasing in that order and
    capped at 1. Returned in the input's order."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        adj[j] = running
    return [float(x) for x in adj]


def seeds_for_paired_t(sd: float, target: float, limit: int = 10_000) -> int:
    """The fewest paired seeds n whose t(n - 1) * sd / sqrt(n) is at most `target`, for a pair whose
    seed-wise differences scatter by `sd` (`limit` if none is)."""
    return next((n for n in range(2, limit) if stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) <= target), limit)


def paired_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 4000,
                rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Mean of a[s] - b[s] over paired seeds, with a bootstrap 95% interval over seeds."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 1 or d.size == 0:
        raise ValueError("a and b must be equal-length 1-d arrays")
    rng = rng or np.random.default_rng(0)
    boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    if np.std(np.asarray(x, dtype=float)) == 0 or np.std(np.asarray(y, dtype=float)) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b; nan when it is undefined."""
    r = stats.kendalltau(x, y).statistic
    return float("nan") if r is None else float(r)


def kendall_boot(x: Sequence[float], y: Sequence[float], n_boot: int, rng: np.random.Generator
                 ) -> tuple[float, float, float]:
    """Kendall's tau with a bootstrap 95% interval over items (resampled with replacement)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    boots = [kendall(x[i], y[i]) for i in (rng.integers(0, x.size, x.size) for _ in range(n_boot))]
    boots = [b for b in boots if not math.isnan(b)]
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (math.nan, math.nan)
    return kendall(x, y), float(lo), float(hi)


def spearman_boot(x: Sequence[float], y: Sequence[float], n_boot: int = 4000,
                  rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Spearman with a bootstrap 95% interval over candidates (resampled with replacement)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = rng or np.random.default_rng(0)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, x.size, size=x.size)
        r = spearman(x[i], y[i])
        if not math.isnan(r):
            boots.append(r)
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (float("nan"), float("nan"))
    return spearman(x, y), float(lo), float(hi)


# ---------------------------------------------------------------------------------------------
# paired unit tables (the zoo's, reused by every study that pairs seeds)


def paired_accuracy(main: Any) -> tuple[Any, list[int]]:
    """Test accuracy per candidate x seed (a DataFrame), and the seeds every candidate has: means and
    paired comparisons use only those, since a planned seed may not be trained for every candidate yet."""
    acc = main.pivot_table(index="candidate", columns="seed", values="test_acc")
    return acc, [s for s in acc.columns if acc[s].notna().all()]


def pair_diff(acc: Any, a: str | Sequence[str], b: str) -> tuple[np.ndarray, list[int]]:
    """Seed-wise differences a - b (S,) over the seeds both have (a list of names: their mean, over the
    seeds all of them have): a grown pair uses every seed it has, not only those every candidate has."""
    rows = [a] if isinstance(a, str) else list(a)
    both = acc.loc[rows + [b]]
    seeds = [s for s in acc.columns if both[s].notna().all()]
    return both.loc[rows, seeds].mean(axis=0).values - both.loc[b, seeds].values, seeds


def ci_text(d: float, lo: float, hi: float) -> str:
    """A difference and its interval in points: '+1.23 pt [+0.45, +2.01]'."""
    return f"{100 * d:+.2f} pt [{100 * lo:+.2f}, {100 * hi:+.2f}]"
