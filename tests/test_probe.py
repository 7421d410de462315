"""Streaming correlation statistics, forward-hook probing and probe files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hebbnas.errors import HebbnasError
from hebbnas.probe import (
    CorrelationStats,
    ModuleStats,
    ProbeResult,
    check_probe_matches,
    load_probe,
    probe_model,
    save_probe,
)


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------- reference


def _ring_offsets(r: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if max(abs(dy), abs(dx)) == r]


def _reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, np.ndarray | None]]:
    """Two-pass float64 mean, variance, correlation and pooled ring correlations of (B, C, H, W)."""
    b, c, h, w = x.shape
    flat = x.transpose(1, 0, 2, 3).reshape(c, -1)
    mean = flat.mean(axis=1)
    centred = flat - mean[:, None]
    cov = centred @ centred.T / flat.shape[1]
    var = np.diag(cov).copy()
    corr = cov / np.sqrt(np.outer(var, var))
    rings: dict[int, np.ndarray | None] = {}
    for r in (1, 2):
        firsts, seconds = [], []
        for dy, dx in _ring_offsets(r):
            y0, y1, x0, x1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
            if y1 <= y0 or x1 <= x0:
                continue
            firsts.append(x[:, :, y0:y1, x0:x1].transpose(1, 0, 2, 3).reshape(c, -1))
            seconds.append(x[:, :, y0 + dy : y1 + dy, x0 + dx : x1 + dx].transpose(1, 0, 2, 3).reshape(c, -1))
        f, s = np.concatenate(firsts, axis=1), np.concatenate(seconds, axis=1)
        fc, sc = f - f.mean(axis=1, keepdims=True), s - s.mean(axis=1, keepdims=True)
        rings[r] = (fc @ sc.T / f.shape[1]) / np.sqrt(np.outer((fc**2).mean(1), (sc**2).mean(1)))
    return mean, var, corr, rings


def _correlated_maps(rng: np.random.Generator, b: int, c: int, h: int, w: int, mean_scale: float) -> np.ndarray:
    """(B, C, H, W) float32 maps: 4 groups sharing spatially smooth latents, large per-channel means."""
    lat = rng.standard_normal((b, 4, h + 2, w + 2))
    smooth = lat[:, :, 1:-1, 1:-1] + 0.5 * lat[:, :, :-2, 1:-1] + 0.5 * lat[:, :, 1:-1, 2:]
    x = np.empty((b, c, h, w))
    for ch in range(c):
        x[:, ch] = 0.8 * smooth[:, ch % 4] + 0.6 * rng.standard_normal((b, h, w))
    x = x * rng.uniform(0.5, 3.0, c)[None, :, None, None]
    x = x + rng.uniform(-mean_scale, mean_scale, c)[None, :, None, None]
    return x.astype(np.float32)


def _feed(stats: CorrelationStats, x: np.ndarray, sizes: list[int]) -> None:
    start = 0
    for size in sizes:
        stats.update(torch.from_numpy(x[start : start + size]))
        start += size
    assert start == x.shape[0]


# ----------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(("chunk_positions", "min_block"), [(None, 128), (60, 4), (500, 8)])
def test_streaming_matches_float64_reference(chunk_positions: int | None, min_block: int) -> None:
    rng = np.random.default_rng(0)
    x = _correlated_maps(rng, b=70, c=20, h=7, w=6, mean_scale=1000.0)
    mean, var, corr, rings = _reference(x.astype(np.float64))
    stats = CorrelationStats(chunk_positions=chunk_positions, min_block=min_block)  # 4, 8: levels + padding
    _feed(stats, x, [1, 9, 3, 17, 2, 11, 27])  # uneven batches, chunk boundaries inside batches
    st = stats.finalize()
    assert st.n == 70 * 42 and st.n_images == 70 and st.map_size == (7, 6)
    np.testing.assert_allclose(st.mean, mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(st.var, var, rtol=1e-6)
    np.testing.assert_allclose(st.corr, corr, rtol=0, atol=1e-6)
    for r in (1, 2):
        np.testing.assert_allclose(st.corr_ring[r], rings[r], rtol=0, atol=1e-6)
    assert st.ring_measurable == {1: True, 2: True}
    assert not st.dead.any()


def test_mean_drift_recentres_and_stays_exact() -> None:
    rng = np.random.default_rng(1)
    x = _correlated_maps(rng, b=40, c=12, h=5, w=5, mean_scale=1.0)
    x[20:] += 800.0  # the reference mean taken from the first batch is far off for the second half
    mean, _, corr, rings = _reference(x.astype(np.float64))
    stats = CorrelationStats(chunk_positions=100)
    _feed(stats, x, [10, 10, 10, 10])
    st = stats.finalize()
    # Values copied before the re-centring keep float32 rounding of x - K_old (half an ulp of ~800).
    np.testing.assert_allclose(st.mean, mean, rtol=1e-8)
    np.testing.assert_allclose(st.corr, corr, rtol=0, atol=1e-6)
    np.testing.assert_allclose(st.corr_ring[2], rings[2], rtol=0, atol=1e-6)
    # Without re-centring, the float32 GEMM of data ~800 away from the reference loses digits.
    naive = CorrelationStats(chunk_positions=100, reshift_sigmas=1e12)
    _feed(naive, x, [10, 10, 10, 10])
    assert np.abs(naive.finalize().mean - mean).max() > 10 * np.abs(st.mean - mean).max()


def test_merge_equals_single_stream() -> None:
    rng = np.random.default_rng(2)
    x = _correlated_maps(rng, b=30, c=10, h=6, w=6, mean_scale=300.0)
    x[12:] += np.float32(7.0)  # the two halves get different reference means
    whole, left, right = CorrelationStats(), CorrelationStats(), CorrelationStats()
    _feed(whole, x, [30])
    _feed(left, x[:12], [5, 7])
    _feed(right, x[12:], [18])
    a, b = whole.finalize(), left.merge(right).finalize()
    assert b.n == a.n
    np.testing.assert_allclose(b.mean, a.mean, atol=1e-6)
    np.testing.assert_allclose(b.corr, a.corr, atol=1e-6)
    np.testing.assert_allclose(b.corr_ring[1], a.corr_ring[1], atol=1e-6)
    other = CorrelationStats()
    other.update(torch.zeros(2, 10, 3, 3))
    with pytest.raises(HebbnasError, match="cannot merge"):
        left.merge(other)


def test_state_size_independent_of_samples() -> None:
    stats = CorrelationStats(chunk_positions=256)
    x = torch.randn(8, 16, 4, 4)
    stats.update(x)
    size = stats.state_nbytes()
    for _ in range(60):
        stats.update(x)
    assert stats.state_nbytes() == size
    assert stats.finalize().n == 61 * 8 * 16


def test_dead_channels_masked_not_nan() -> None:
    rng = np.random.default_rng(3)
    x = _correlated_maps(rng, b=16, c=6, h=5, w=5, mean_scale=10.0)
    x[:, 2] = 0.0  # dead ReLU
    x[:, 4] = 537.25  # constant far from zero
    stats = CorrelationStats()
    _feed(stats, x, [7, 9])
    st = stats.finalize()
    assert st.dead.tolist() == [False, False, True, False, True, False]
    for m in (st.corr, st.corr_ring[1], st.corr_ring[2]):
        assert np.isfinite(m).all()
        assert (m[[2, 4]][:, [0, 1, 3, 5]] == 0).all() and (m[:, [2, 4]][[0, 1, 3, 5]] == 0).all()
    assert st.corr[2, 2] == 1.0 and st.corr[4, 4] == 1.0
    assert np.isfinite(st.correlation(remove_common=True)).all()


@pytest.mark.parametrize(
    ("size", "measurable"), [((1, 1), (False, False)), ((2, 2), (True, False)), ((3, 4), (True, True))]
)
def test_small_maps_mark_rings_not_measurable(size: tuple[int, int], measurable: tuple[bool, bool]) -> None:
    stats = CorrelationStats()
    stats.update(torch.randn(50, 5, *size))
    st = stats.finalize()
    assert (st.ring_measurable[1], st.ring_measurable[2]) == measurable
    for r, ok in zip((1, 2), measurable):
        assert (st.corr_ring[r] is not None) == ok
        assert (st.ring_pairs[r] > 0) == ok


def test_exact_under_autocast_and_flags_restored() -> None:
    rng = np.random.default_rng(4)
    x = _correlated_maps(rng, b=12, c=8, h=4, w=4, mean_scale=500.0)
    _, _, corr, _ = _reference(x.astype(np.float64))
    before = torch.get_float32_matmul_precision()
    stats = CorrelationStats()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _feed(stats, x, [12])
        st = stats.finalize()
    np.testing.assert_allclose(st.corr, corr, atol=1e-6)
    assert torch.get_float32_matmul_precision() == before


def test_bad_input_raises() -> None:
    stats = CorrelationStats(name="inception4c")
    with pytest.raises(HebbnasError, match="inception4c.*shape"):
        stats.update(torch.zeros(3, 4))
    with pytest.raises(HebbnasError, match="no activations"):
        stats.finalize()
    stats.update(torch.zeros(2, 4, 3, 3))
    with pytest.raises(HebbnasError, match="channels"):
        stats.update(torch.zeros(2, 5, 3, 3))
    with pytest.raises(HebbnasError, match="map size"):
        stats.update(torch.zeros(2, 4, 2, 3))
    with pytest.raises(HebbnasError, match="floating"):
        stats.update(torch.zeros(2, 4, 3, 3, dtype=torch.int64))


# -------------------------------------------------------------------------------------------- probing


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.inception3a = nn.Sequential(nn.Conv2d(8, 12, 1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.inception3b = nn.Sequential(nn.Conv2d(12, 6, 1), nn.ReLU())
        self.head = nn.Linear(6, 3)
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inception3a(self.stem(x))
        if self.fail:
            raise RuntimeError("boom")
        x = self.inception3b(self.pool(x))
        return self.head(x.mean(dim=(2, 3)))


def _batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, 8, 8, generator=g), torch.zeros(4)) for _ in range(n)]


def test_probe_model_records_inputs_and_removes_hooks() -> None:
    torch.manual_seed(0)
    net = _TinyNet().train()
    res = probe_model(net, _batches(), ["inception3a", "inception3b"], topology_hash="abc")
    assert isinstance(res, ProbeResult) and res.topology_hash == "abc"
    a, b = res.modules["inception3a"], res.modules["inception3b"]
    assert (a.channels, a.map_size, a.n) == (8, (8, 8), 3 * 4 * 64)
    assert (b.channels, b.map_size, b.n_images) == (12, (4, 4), 12)
    assert all(not m._forward_pre_hooks for m in net.modules())
    assert net.training  # mode restored
    # Same numbers as feeding the stem output directly.
    direct = CorrelationStats()
    with torch.no_grad():
        net.eval()
        for x, _ in _batches():
            direct.update(net.stem(x))
    np.testing.assert_allclose(a.corr, direct.finalize().corr, atol=1e-9)


def test_probe_model_removes_hooks_on_error() -> None:
    net = _TinyNet()
    net.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        probe_model(net, _batches(1), ["inception3a"])
    assert all(not m._forward_pre_hooks for m in net.modules())
    with pytest.raises(HebbnasError, match="no submodule named 'inception9z'"):
        probe_model(net, _batches(1), ["inception9z"])
    with pytest.raises(HebbnasError, match="move the model"):
        probe_model(net, _batches(1), ["inception3a"], device="meta")


# ---------------------------------------------------------------------------------------------- files


def _result() -> ProbeResult:
    net = _TinyNet()
    return probe_model(net, _batches(2), ["inception3a", "inception3b"], topology_hash="h1")


def test_save_load_round_trip(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    res = _result()
    path = tmp_path / "probe.npz"
    save_probe(res, path)
    back = load_probe(path)
    assert back.topology_hash == "h1" and list(back.modules) == ["inception3a", "inception3b"]
    for name, st in res.modules.items():
        got = back.modules[name]
        assert isinstance(got, ModuleStats)
        assert (got.n, got.n_images, got.map_size, got.ring_pairs) == (st.n, st.n_images, st.map_size, st.ring_pairs)
        for field in ("mean", "var", "corr", "dead"):
            np.testing.assert_array_equal(getattr(got, field), getattr(st, field))
        for r in (1, 2):
            np.testing.assert_array_equal(got.corr_ring[r], st.corr_ring[r])
    with np.load(path, allow_pickle=False) as npz:  # plain arrays, no pickle
        assert "inception3a/corr" in npz.files and "__meta__" in npz.files


def test_load_missing_or_corrupt_file(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(HebbnasError, match="cannot read probe file .*nope.npz"):
        load_probe(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(HebbnasError, match="corrupt probe file .*bad.npz"):
        load_probe(bad)
    truncated = tmp_path / "trunc.npz"
    save_probe(_result(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:-200])
    with pytest.raises(HebbnasError, match="corrupt probe file"):
        load_probe(truncated)


def test_check_probe_matches() -> None:
    res = _result()
    check_probe_matches(res, "h1", {"inception3a": 8, "inception3b": 12})
    with pytest.raises(HebbnasError, match="probe file is from another topology"):
        check_probe_matches(res, "h2", {"inception3a": 8})
    with pytest.raises(HebbnasError, match="probe file is from another topology: inception3b has 12"):
        check_probe_matches(res, "h1", {"inception3b": 16})
    with pytest.raises(HebbnasError, match="probe file is from another topology: modules"):
        check_probe_matches(res, "h1", {"inception4a": 480})
