"""Correlation clustering, summaries, common-activity removal and spatial scales."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from hebbnas.cluster import (
    METHODS,
    ClusterScales,
    cluster_correlation,
    cluster_scales,
    linkage_matrix,
    partial_correlation_on_mean,
    summarize_clusters,
)
from hebbnas.errors import HebbnasError
from hebbnas.probe import CorrelationStats


pytestmark = pytest.mark.usefixtures("one_thread")


def _corr_of(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, N) samples -> covariance, correlation (dead rows 0, diagonal 1), dead mask."""
    xc = x - x.mean(axis=1, keepdims=True)
    cov = xc @ xc.T / x.shape[1]
    sd = np.sqrt(np.diag(cov))
    dead = sd < 1e-12
    inv = np.where(dead, 0.0, 1.0 / np.where(dead, 1.0, sd))
    corr = cov * inv[:, None] * inv[None, :]
    np.fill_diagonal(corr, 1.0)
    return cov, corr, dead


def _planted(seed: int = 0, n: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Groups with within-group r ~ 0.5-0.8, independent noise channels and one dead constant channel."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for g, size in enumerate([9, 7, 6, 4, 3, 2]):
        latent = rng.standard_normal(n)
        for _ in range(size):
            a = rng.uniform(0.72, 0.9)
            rows.append(a * latent + np.sqrt(1 - a * a) * rng.standard_normal(n))
            truth.append(g)
    for i in range(6):
        rows.append(rng.standard_normal(n))
        truth.append(100 + i)
    rows.append(np.full(n, 3.0))
    truth.append(200)
    perm = rng.permutation(len(rows))
    x = (np.array(rows) * rng.uniform(0.5, 4.0, len(rows))[:, None])[perm]
    return x, np.array(truth)[perm]


@pytest.mark.parametrize("method", METHODS)
def test_planted_groups_recovered(method: str) -> None:
    x, truth = _planted()
    _, corr, dead = _corr_of(x)
    assert dead.sum() == 1
    labels = cluster_correlation(corr, method=method, threshold=0.5, dead=dead)
    assert labels.dtype == np.int64 and labels.shape == truth.shape
    assert set(labels.tolist()) == set(range(labels.max() + 1))
    assert adjusted_rand_score(truth, labels) >= 0.95
    assert (labels == labels[dead][0]).sum() == 1  # the dead channel is a singleton


def test_labels_deterministic_order_and_cap() -> None:
    x, _ = _planted(seed=1)
    _, corr, dead = _corr_of(x)
    labels = cluster_correlation(corr, dead=dead)
    first = [int(np.flatnonzero(labels == k)[0]) for k in range(labels.max() + 1)]
    assert first == sorted(first)  # numbered by lowest channel
    capped = cluster_correlation(corr, dead=dead, max_clusters=3)
    assert capped.max() + 1 == 3 + 1  # 3 live clusters + the dead singleton
    sp = cluster_correlation(corr, method="spectral", dead=dead, max_clusters=4)
    assert sp.max() + 1 <= 4 + 1


def test_all_dead_and_single_channel() -> None:
    assert cluster_correlation(np.eye(3), dead=np.ones(3, dtype=bool)).tolist() == [0, 1, 2]
    assert cluster_correlation(np.eye(1)).tolist() == [0]
    assert cluster_correlation(np.eye(1), method="spectral").tolist() == [0]


@pytest.mark.parametrize(
    ("matrix", "kwargs", "message"),
    [
        (np.ones((3, 4)), {}, "square"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), {}, "non-finite"),
        (np.array([[1.0, 0.5], [0.2, 1.0]]), {}, "not symmetric"),
        (np.array([[4.0, 2.0], [2.0, 3.0]]), {}, "outside \\[-1, 1\\]"),
        (np.eye(2), {"threshold": 0.0}, "threshold"),
        (np.eye(2), {"threshold": 1.0}, "threshold"),
        (np.eye(2), {"method": "ward"}, "unknown clustering method"),
        (np.eye(2), {"dead": np.array([1, 0])}, "dead must be a boolean"),
        (np.eye(2), {"max_clusters": 0}, "max_clusters"),
        (np.zeros((0, 0)), {}, "empty"),
    ],
)
def test_bad_input_raises(matrix: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(HebbnasError, match=message):
        cluster_correlation(matrix, **kwargs)


def test_summaries_and_linkage() -> None:
    x, _ = _planted(seed=2)
    _, corr, dead = _corr_of(x)
    labels = cluster_correlation(corr, dead=dead)
    summaries = summarize_clusters(labels, corr, dead)
    assert [s.label for s in summaries] == list(range(labels.max() + 1))
    assert sum(s.size for s in summaries) == len(labels)
    for s in summaries:
        assert list(s.members) == np.flatnonzero(labels == s.label).tolist()
        if s.size > 1:
            assert 0.5 < s.cohesion < 0.85
        else:
            assert np.isnan(s.cohesion)
    assert sum(s.dead for s in summaries) == 1
    z = linkage_matrix(corr, "complete")
    assert z.shape == (len(labels) - 1, 4)
    with pytest.raises(HebbnasError, match="unknown method"):
        linkage_matrix(corr, "spectral")


def test_partial_correlation_removes_common_activity() -> None:
    rng = np.random.default_rng(3)
    n, groups, size = 40000, 10, 4
    common = rng.standard_normal(n)
    rows = []
    for _ in range(groups):
        latent = rng.standard_normal(n)
        for _ in range(size):
            rows.append(1.0 * common + 0.9 * latent + 0.5 * rng.standard_normal(n) + 3.0)
    x = np.array(rows)
    cov, corr, _ = _corr_of(x)
    labels = np.repeat(np.arange(groups), size)
    across = labels[:, None] != labels[None, :]
    assert np.abs(corr[across]).mean() > 0.3  # the common level lifts every correlation
    part = partial_correlation_on_mean(cov)
    assert np.abs(part[across]).mean() < 0.15
    # Reference: regress each channel on the per-position mean activation explicitly.
    m = x.mean(axis=0)
    mc = m - m.mean()
    xc = x - x.mean(axis=1, keepdims=True)
    resid = xc - np.outer(xc @ mc / (mc @ mc), mc)
    _, ref, _ = _corr_of(resid)
    np.testing.assert_allclose(part, ref, atol=1e-8)
    assert cluster_correlation(corr, threshold=0.6).max() + 1 == 1  # raw: one blob
    assert cluster_correlation(part, threshold=0.6).max() + 1 == groups
    # Dead channels stay masked, never NaN.
    dead = np.zeros(len(rows), dtype=bool)
    dead[0] = True
    masked = partial_correlation_on_mean(cov, dead=dead)
    assert np.isfinite(masked).all() and masked[0, 0] == 1.0 and (masked[0, 1:] == 0).all()
    with pytest.raises(HebbnasError, match="square"):
        partial_correlation_on_mean(np.ones((2, 3)))


def _box_field(rng: np.random.Generator, b: int, h: int, w: int, k: int) -> np.ndarray:
    """White noise smoothed by a k x k box filter (valid part only, so no border effects), unit std."""
    z = rng.standard_normal((b, h + k - 1, w + k - 1))
    c = np.pad(z, ((0, 0), (1, 0), (1, 0))).cumsum(axis=1).cumsum(axis=2)
    s = c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]
    return s / s.std()


def test_spatial_scales_from_smoothed_latent_fields() -> None:
    rng = np.random.default_rng(4)
    b, h, w = 48, 12, 12
    chans, truth, kernels = [], [], [1, 3, 5, 3]
    for g, k in enumerate(kernels):
        field = _box_field(rng, b, h, w, k)
        for _ in range(5):
            a = rng.uniform(0.75, 0.9)
            chans.append(a * field + np.sqrt(1 - a * a) * rng.standard_normal((b, h, w)))
            truth.append(g)
    chans.append(_box_field(rng, b, h, w, 5))  # a lone smooth channel: a singleton of scale 5
    truth.append(len(kernels))
    chans.append(np.zeros((b, h, w)))  # dead
    truth.append(len(kernels) + 1)
    x = np.stack(chans, axis=1).astype(np.float32) + 200.0
    stats = CorrelationStats()
    for i in range(0, b, 16):
        stats.update(torch.from_numpy(x[i : i + 16]))
    st = stats.finalize()
    labels = cluster_correlation(st.corr, dead=st.dead)
    assert adjusted_rand_score(truth, labels) == 1.0
    res = cluster_scales(labels, st.corr, st.corr_ring, dead=st.dead)
    assert isinstance(res, ClusterScales) and res.measurable == (True, True) and res.note == "measured"
    expected = dict(zip(range(len(kernels) + 2), kernels + [5, 1]))
    for g, k in expected.items():
        label = labels[truth.index(g)]
        assert res.scales[label] == k, (g, res.ratios[label])


def test_scales_not_measurable_on_small_maps() -> None:
    stats = CorrelationStats()
    stats.update(torch.randn(64, 4, 2, 2))
    st = stats.finalize()
    labels = np.arange(4)
    res = cluster_scales(labels, st.corr, st.corr_ring)
    assert res.measurable == (True, False) and np.isnan(res.ratios[:, 1]).all()
    assert set(res.scales.tolist()) <= {1, 3} and "ring 2 not measurable" in res.note
    none = cluster_scales(labels, st.corr, {1: None, 2: None})
    assert none.measurable == (False, False) and (none.scales == 1).all()
    assert "not measurable" in none.note
    with pytest.raises(HebbnasError, match="labels"):
        cluster_scales(np.array([0, 2, 2, 2]), st.corr, st.corr_ring)
    with pytest.raises(HebbnasError, match="scale_cut"):
        cluster_scales(labels, st.corr, st.corr_ring, scale_cut=-1.0)
