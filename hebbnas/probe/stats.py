"""The probe's values: the finished statistics of one module input (`ModuleStats`) and of a network
(`ProbeResult`). Read-only float64 numpy arrays; what the clustering, the scores and the reports read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hebbnas.correlation import partial_correlation_on_mean

RINGS: tuple[int, ...] = (1, 2)
"""Chebyshev distances of the spatial-offset rings: ring 1 = 8 offsets, ring 2 = 16 offsets."""


def readonly(a: np.ndarray) -> np.ndarray:
    """A contiguous read-only view: finished statistics are values, never edited in place."""
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class ModuleStats:
    """Finished statistics of one module input (float64 numpy, read-only).

    Attributes:
        n: positions seen (images x H x W).
        n_images: images seen.
        map_size: (H, W) of the activation maps.
        mean: (C,) channel means.
        var: (C,) channel variances (population, ddof = 0).
        corr: (C, C) zero-offset Pearson correlation; dead rows/cols 0, diagonal 1.
        dead: (C,) True where a channel's variance is ~0 (relative tolerance).
        corr_ring: ring r -> (C, C) correlation of channel i at p with channel j at p + d pooled over the
            ring's offsets d (valid positions only), or None when the map is too small for the ring.
            Symmetric; the diagonal is each channel's spatial autocorrelation; dead rows/cols 0.
        ring_pairs: ring r -> number of (position, offset) pairs pooled (0 when not measurable).
    """

    n: int
    n_images: int
    map_size: tuple[int, int]
    mean: np.ndarray
    var: np.ndarray
    corr: np.ndarray
    dead: np.ndarray
    corr_ring: dict[int, np.ndarray | None]
    ring_pairs: dict[int, int]

    @property
    def channels(self) -> int:
        """Number of channels C."""
        return int(self.mean.shape[0])

    @property
    def ring_measurable(self) -> dict[int, bool]:
        """ring r -> whether the map was large enough to measure it (min(H, W) > r)."""
        return {r: m is not None for r, m in self.corr_ring.items()}

    @property
    def cov(self) -> np.ndarray:
        """(C, C) covariance, rebuilt from corr and var (dead channels give zero rows)."""
        std = np.sqrt(np.clip(self.var, 0.0, None))
        std = np.where(self.dead, 0.0, std)
        return self.corr * std[:, None] * std[None, :]

    def correlation(self, *, remove_common: bool = False) -> np.ndarray:
        """Zero-offset correlation, optionally after regressing out the per-position mean activation.

        ReLU outputs share a common activity level that lifts every correlation (docs/probe-and-report.md); with
        ``remove_common`` the partial correlation given the channel-mean activation is returned.
        """
        if not remove_common:
            return self.corr
        return partial_correlation_on_mean(self.cov, dead=self.dead)


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """All probed modules of one network, tagged with the caller's topology hash."""

    modules: dict[str, ModuleStats]
    topology_hash: str = ""
