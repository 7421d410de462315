"""Correlation-matrix algebra shared by the probe and the clustering: the partial correlation given the
common activity level, and the checks its inputs get.

Its own module so that the probe (`ModuleStats.correlation`) and the clustering both use it without one
depending on the other.
"""

from __future__ import annotations

import numpy as np

from hebbnas.errors import HebbnasError

SYM_TOL = 1e-6
"""Tolerance of the symmetry and range checks on correlation and covariance matrices."""


def check_dead(dead: object, c: int) -> np.ndarray:
    """A (C,) boolean mask of dead channels (all False for None), or HebbnasError."""
    if dead is None:
        return np.zeros(c, dtype=bool)
    d = np.asarray(dead)
    if d.shape != (c,) or d.dtype != bool:
        raise HebbnasError(f"dead must be a boolean array of length {c}, got {d.dtype} {d.shape}")
    return d


def partial_correlation_on_mean(
    cov: np.ndarray, *, dead: np.ndarray | None = None, rtol: float = 1e-9
) -> np.ndarray:
    """Correlation after regressing every channel on the per-position mean activation m = mean_i x_i.

    ReLU outputs share a common activity level that lifts every correlation (docs/probe-and-report.md). From the
    covariance alone: c = Cov 1 / C = cov(x, m), v = 1^T Cov 1 / C^2 = var(m), and the partial
    covariance is Cov - c c^T / v. Given a correlation matrix instead, m is the mean of the standardised
    channels. Dead channels, and channels fully explained by m, get rows/cols 0 and diagonal 1.

    Args:
        cov: (C, C) covariance (or correlation) matrix, symmetric and finite.
        dead: (C,) bool mask of dead channels (excluded from m).
        rtol: a partial variance below rtol times the channel's variance counts as fully explained.
    """
    a = np.asarray(cov, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise HebbnasError(f"covariance matrix must be square and non-empty, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise HebbnasError("covariance matrix has non-finite entries (NaN or inf)")
    if not np.allclose(a, a.T, rtol=1e-9, atol=SYM_TOL * max(1.0, float(np.abs(a).max()))):
        raise HebbnasError("covariance matrix is not symmetric")
    c = a.shape[0]
    dead_mask = check_dead(dead, c)
    alive = ~dead_mask
    var = np.diag(a).copy()
    if (var < -SYM_TOL).any():
        raise HebbnasError("covariance matrix has a negative variance")
    weights = alive / max(int(alive.sum()), 1)  # m = sum_i w_i x_i over live channels
    cm = a @ weights  # (C,) cov(x_i, m)
    vm = float(weights @ cm)  # var(m)
    part = a - np.outer(cm, cm) / vm if vm > 0 else a.copy()
    pvar = np.diag(part).copy()
    explained = pvar <= rtol * np.maximum(var, 0.0)
    masked = dead_mask | explained | (var <= 0)
    ok = ~masked
    inv = np.zeros(c)
    inv[ok] = 1.0 / np.sqrt(pvar[ok])
    out = part * inv[:, None] * inv[None, :]
    np.clip(out, -1.0, 1.0, out=out)
    out[masked, :] = 0.0
    out[:, masked] = 0.0
    np.fill_diagonal(out, 1.0)
    return (out + out.T) / 2.0
