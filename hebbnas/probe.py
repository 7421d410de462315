"""Streaming channel-correlation statistics of activation maps, and the forward hooks that feed them.

The probe answers one question per Inception input: which channels fire together, at the same
position (ring 0) and at neighbouring positions (rings 1 and 2, Chebyshev distance 1 and 2). Memory is
O(C^2) whatever the number of images, and the cost is dominated by float32 GEMMs on the activations'
own device.

Numerics (DESIGN.md, "Known pitfalls"): raw float32 moments are useless when means are large, so every
chunk of activations is shifted by a reference mean ``K`` while it is copied into the chunk buffer
(``x - K`` is exact in float32 when ``x`` is near ``K``), the GEMMs run on the shifted data, and the
chunk sums are accumulated in float64. ``K`` is the first batch's mean; when a later chunk's mean drifts
more than ``reshift_sigmas`` standard deviations from it, the chunk is re-centred and the float64
accumulators are re-expressed around the new reference (the exact rank-1 update of Chan et al.'s
parallel algorithm); :meth:`CorrelationStats.merge` combines two accumulators the same way.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hebbnas.errors import HebbnasError

__all__ = [
    "RINGS",
    "CorrelationStats",
    "ModuleStats",
    "ProbeResult",
    "probe_model",
    "save_probe",
    "load_probe",
    "check_probe_matches",
]

RINGS: tuple[int, ...] = (1, 2)
"""Chebyshev distances of the spatial-offset rings: ring 1 = 8 offsets, ring 2 = 16 offsets."""

_FORMAT = "hebbnas-probe"
_VERSION = 1
_DEFAULT_CHUNK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _exact_fp32(device: torch.device) -> Iterator[None]:
    """Run float32 GEMMs in true float32: no autocast, no TF32; global flags are restored afterwards."""
    old_precision = torch.get_float32_matmul_precision()
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    old_cudnn_tf32 = torch.backends.cudnn.allow_tf32
    try:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False  # the ring convolutions
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(old_precision)
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
        torch.backends.cudnn.allow_tf32 = old_cudnn_tf32


def _upper_blocks(c: int, min_block: int, augmented: bool = True) -> list[tuple[int, int, int, int]]:
    """Blocks (r0, r1, c0, c1) covering the upper triangle of a (C+1) x (C+1) (or C x C) Gram matrix.

    Recursive halving: each level computes the off-diagonal block once and recurses into the two
    diagonal blocks, so the flops approach half of a full GEMM while every GEMM stays large. Index C is
    the augmentation row/column (a row of ones) that carries the sums: every block that ends at
    column C is widened to C+1, so column C is filled for all rows.
    """
    blocks: list[tuple[int, int, int, int]] = []
    end_c = c + 1 if augmented else c

    def rec(a: int, b: int) -> None:
        if b - a <= min_block:
            end = end_c if b == c else b
            blocks.append((a, end, a, end))
            return
        mid = a + (((b - a) // 2 + 15) // 16) * 16  # multiple of 16 keeps the GEMM tiles aligned
        blocks.append((a, mid, mid, end_c if b == c else b))
        rec(a, mid)
        rec(mid, b)

    rec(0, c)
    return blocks


def _gram_upper(
    a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, blocks: Sequence[tuple[int, int, int, int]]
) -> torch.Tensor:
    """Upper-block part of ``a @ b.T`` into ``out`` (the lower blocks are left untouched).

    a, b: (C+1, N) float32 (rows may be strided); out: (C+1, C+1) float32.
    """
    for r0, r1, c0, c1 in blocks:
        torch.mm(a[r0:r1], b[c0:c1].T, out=out[r0:r1, c0:c1])
    return out


def _symmetric_from_upper(m: torch.Tensor) -> torch.Tensor:
    """Full symmetric matrix from the upper triangle (the lower one may hold garbage)."""
    upper = torch.triu(m)
    return upper + torch.triu(m, diagonal=1).T


def _ring_weights(h: int, w: int, ring: int) -> torch.Tensor:
    """(H, W) number of ring offsets d for which position p + d lies inside the map."""
    ones = torch.ones(1, 1, h, w, dtype=torch.float64)
    outer = F.avg_pool2d(ones, 2 * ring + 1, 1, ring, count_include_pad=True, divisor_override=1)
    inner = F.avg_pool2d(ones, 2 * ring - 1, 1, ring - 1, count_include_pad=True, divisor_override=1)
    return (outer - inner)[0, 0]


def _ring_measurable(h: int, w: int, ring: int) -> bool:
    """A ring is measured only when every offset direction has a valid pair: min(H, W) > ring."""
    return min(h, w) > ring


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _dead_mask(mean: np.ndarray, var: np.ndarray, rtol: float) -> np.ndarray:
    """Channels whose std is below ``rtol`` times their own scale (|mean| or the largest std)."""
    std = np.sqrt(np.clip(var, 0.0, None))
    scale = np.maximum(np.abs(mean), std.max(initial=0.0))
    return std <= rtol * scale


def _normalise(cov: np.ndarray, var_row: np.ndarray, var_col: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """cov / (std_i std_j) with dead rows/cols set to 0, clipped to [-1, 1]."""
    alive = ~dead
    inv_r = np.zeros_like(var_row)
    inv_c = np.zeros_like(var_col)
    inv_r[alive] = 1.0 / np.sqrt(var_row[alive])
    inv_c[alive] = 1.0 / np.sqrt(var_col[alive])
    corr = cov * inv_r[:, None] * inv_c[None, :]
    np.clip(corr, -1.0, 1.0, out=corr)
    corr[dead, :] = 0.0
    corr[:, dead] = 0.0
    return corr


# ----------------------------------------------------------------------------------------- value types


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

        ReLU outputs share a common activity level that lifts every correlation (DESIGN.md); with
        ``remove_common`` the partial correlation given the channel-mean activation is returned.
        """
        if not remove_common:
            return self.corr
        from hebbnas.cluster import partial_correlation_on_mean

        return partial_correlation_on_mean(self.cov, dead=self.dead)


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """All probed modules of one network, tagged with the caller's topology hash."""

    modules: dict[str, ModuleStats]
    topology_hash: str = ""


# ------------------------------------------------------------------------------------------ accumulator


class CorrelationStats:
    """Streaming mean / variance / correlation (rings 0, 1, 2) of (B, C, H, W) activation maps.

    Activations are copied (shifted by the reference mean, in layout (C, images, H, W)) into a chunk
    buffer of about ``chunk_positions`` positions; a full chunk costs one upper-triangular Gram GEMM
    for ring 0 and one per ring (on the buffer's device, float32), then a float64 accumulation. State is
    O(C^2 + C * chunk_positions), independent of how many samples are fed.
    """

    def __init__(
        self,
        channels: int | None = None,
        *,
        rings: bool = True,
        chunk_positions: int | None = None,
        min_block: int = 128,
        dead_rtol: float = 1e-6,
        reshift_sigmas: float = 3.0,
        name: str = "activations",
    ) -> None:
        """Create an empty accumulator.

        Args:
            channels: expected C, or None to take it from the first batch.
            rings: also measure the spatial-offset rings 1 and 2 (costs about 2 extra half-GEMMs).
            chunk_positions: positions per GEMM chunk; default keeps the buffer near 64 MiB.
            min_block: diagonal block size where the triangular recursion stops.
            dead_rtol: a channel is dead when std <= dead_rtol * max(|mean|, largest std).
            reshift_sigmas: re-centre a chunk whose mean is this many stds from the reference.
            name: used in error messages (e.g. the module name).
        """
        if channels is not None and channels < 1:
            raise HebbnasError(f"{name}: channels must be >= 1, got {channels}")
        if chunk_positions is not None and chunk_positions < 1:
            raise HebbnasError(f"{name}: chunk_positions must be >= 1, got {chunk_positions}")
        self.name = name
        self.rings = rings
        self._channels = channels
        self._chunk_positions = chunk_positions
        self._min_block = max(16, int(min_block))
        self._dead_rtol = float(dead_rtol)
        self._reshift_sigmas = float(reshift_sigmas)
        self._initialised = False
        self.n = 0
        self.n_images = 0
        self._n_sums = 0
        self.map_size: tuple[int, int] | None = None

    # -- state -------------------------------------------------------------------------------------

    def _init_state(self, x: torch.Tensor) -> None:
        b, c, h, w = x.shape
        dev = x.device
        acc_dev = torch.device("cpu") if dev.type == "mps" else dev  # MPS has no float64
        self._dev, self._acc_dev = dev, acc_dev
        self._channels, self.map_size = c, (h, w)
        hw = h * w
        target = self._chunk_positions or max(4096, _DEFAULT_CHUNK_BYTES // (4 * (c + 1)))
        self._cap = max(1, math.ceil(target / hw))  # images per chunk
        self._fill = 0
        # (C+1, images, H, W): shifted activations; row C is ones so the Gram's column C holds the sums.
        self._buf = torch.empty(c + 1, self._cap, h, w, dtype=torch.float32, device=dev)
        self._buf[c].fill_(1.0)
        self._gram = torch.zeros(c + 1, c + 1, dtype=torch.float32, device=dev)
        self._blocks = _upper_blocks(c, self._min_block)
        # Reference shift: first batch mean (float32, so x - K is exact near K).
        self._sigma = torch.zeros(c, dtype=torch.float32, device=dev)  # per-channel std seen so far
        self._rebase(x)
        self._k = self._k32.view(c).to(acc_dev, torch.float64)
        f64 = dict(dtype=torch.float64, device=acc_dev)
        self._s = torch.zeros(c, **f64)  # sum of shifted values
        self._ss = torch.zeros(c, c, **f64)  # sum of shifted outer products (upper blocks valid)
        self._ring_on = {r: self.rings and _ring_measurable(h, w, r) for r in RINGS}
        self._ring_kernel: dict[int, torch.Tensor] = {}
        self._ring_w: dict[int, torch.Tensor] = {}
        self._rs: dict[int, torch.Tensor] = {}
        self._rsw: dict[int, torch.Tensor] = {}
        self._rqw: dict[int, torch.Tensor] = {}
        self._rn: dict[int, int] = {r: 0 for r in RINGS}
        self._blocks_plain = _upper_blocks(c, self._min_block, augmented=False)
        for r in RINGS:
            if not self._ring_on[r]:
                continue
            wr = _ring_weights(h, w, r)
            kernel = torch.ones(2 * r + 1, 2 * r + 1)
            kernel[1:-1, 1:-1] = 0.0  # the ring's offsets only
            self._ring_kernel[r] = kernel.view(1, 1, 2 * r + 1, 2 * r + 1).to(dev)
            self._ring_w[r] = wr.reshape(-1).to(acc_dev)  # (H*W,) pairs per position
            self._rs[r] = torch.zeros(c, c, **f64)
            self._rsw[r] = torch.zeros(c, **f64)
            self._rqw[r] = torch.zeros(c, **f64)
        self._initialised = True

    def _rebase(self, x: torch.Tensor) -> None:
        """Take the reference shift K from this batch's mean (and widen the per-channel std estimate)."""
        c = x.shape[1]
        k = torch.mean(x, dim=(0, 2, 3), dtype=torch.float64).to(torch.float32)
        var = torch.var(x, dim=(0, 2, 3), correction=0).to(torch.float32)
        self._k32 = k.view(c, 1, 1, 1)
        self._sigma = torch.maximum(self._sigma, var.sqrt())

    def _drifted(self, x: torch.Tensor) -> bool:
        """Cheap check on the batch's first image: is its mean many stds away from the reference K?

        Shifting data by a far-away K rounds away low bits (error eps * |x - K|), so such a batch starts
        a new chunk with its own reference instead.
        """
        est = torch.mean(x[0], dim=(1, 2), dtype=torch.float32)
        k = self._k32.view(-1)
        far = (est - k).abs() > self._reshift_sigmas * self._sigma + 1e-6 * k.abs()
        return bool(far.any())

    def state_nbytes(self) -> int:
        """Bytes held by buffers and accumulators; constant once the first batch has been seen."""
        if not self._initialised:
            return 0
        tensors = [self._buf, self._gram, self._k, self._k32, self._sigma, self._s, self._ss]
        tensors += list(self._rs.values()) + list(self._rsw.values()) + list(self._rqw.values())
        tensors += list(self._ring_w.values()) + list(self._ring_kernel.values())
        return sum(t.numel() * t.element_size() for t in tensors)

    # -- feeding -----------------------------------------------------------------------------------

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add a batch of activation maps x: (B, C, H, W), any floating dtype, any device."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise HebbnasError(f"{self.name}: expected activations of shape (B, C, H, W), got {shape}")
        if not x.is_floating_point():
            raise HebbnasError(f"{self.name}: expected floating-point activations, got {x.dtype}")
        b, c, h, w = x.shape
        if self._channels is not None and c != self._channels:
            raise HebbnasError(f"{self.name}: expected {self._channels} channels, got {c}")
        if self.map_size is not None and (h, w) != self.map_size:
            raise HebbnasError(f"{self.name}: map size changed from {self.map_size} to {(h, w)}")
        if b == 0 or h == 0 or w == 0:
            return
        x = x.detach()
        if x.dtype == torch.float64:
            x = x.to(torch.float32)
        if not self._initialised:
            self._init_state(x)
        if x.device != self._dev:
            x = x.to(self._dev)
        with _exact_fp32(self._dev):
            if self._drifted(x):
                self._flush()
                self._rebase(x)
            start = 0
            while start < b:
                take = min(b - start, self._cap - self._fill)
                # NCHW -> (C, images, H, W) and the shift in one pass, straight into the buffer.
                torch.sub(
                    x[start : start + take].transpose(0, 1),
                    self._k32,
                    out=self._buf[:c, self._fill : self._fill + take],
                )
                self._fill += take
                start += take
                if self._fill == self._cap:
                    self._flush()
        self.n_images += b
        self.n += b * h * w

    def _flush(self) -> None:
        """Turn the buffered chunk into float64 sums; the buffer is then empty."""
        if not self._initialised or self._fill == 0:
            return
        c = self._channels
        fill = self._fill
        h, w = self.map_size
        npos = fill * h * w
        a = self._buf[:, :fill].reshape(c + 1, npos)  # view, rows strided
        with _exact_fp32(self._dev):
            chunk_k = self._k32.view(-1).to(self._acc_dev, torch.float64)  # the buffer holds x - chunk_k
            g = _gram_upper(a, a, self._gram, self._blocks).to(self._acc_dev)
            s = g[:c, c].to(torch.float64)
            diag = torch.diagonal(g)[:c].to(torch.float64)
            zbar = s / npos
            var_b = torch.clamp(diag / npos - zbar * zbar, min=0.0)
            self._sigma = torch.maximum(self._sigma, var_b.sqrt().to(self._dev, torch.float32))
            tiny = 4 * torch.finfo(torch.float32).eps * chunk_k.abs()
            drift = (zbar * zbar > self._reshift_sigmas**2 * var_b) & (zbar.abs() > tiny)
            if bool(drift.any()):
                # The chunk's mean is far from the reference: re-centre the chunk (float32 subtraction is
                # correctly rounded relative to its small result) and redo its GEMM.
                delta32 = zbar.to(torch.float32)
                self._buf[:c, :fill].sub_(delta32.to(self._dev).view(c, 1, 1, 1))
                chunk_k = chunk_k + delta32.to(torch.float64)
                g = _gram_upper(a, a, self._gram, self._blocks).to(self._acc_dev)
                s = g[:c, c].to(torch.float64)
            if not torch.equal(chunk_k, self._k):
                self._shift_reference(chunk_k)  # exact float64 re-expression (Chan et al.)
            self._ss.add_(g[:c, :c])
            self._s.add_(s)
            if any(self._ring_on.values()):
                self._flush_rings(c, fill, npos)
        self._n_sums += npos
        self._fill = 0
        # Later chunks are shifted by the nearest float32 reference; the next flush re-expresses exactly.
        self._k32 = chunk_k.to(self._dev, torch.float32).view(c, 1, 1, 1)

    def _flush_rings(self, c: int, fill: int, npos: int) -> None:
        """Ring statistics of the buffered chunk: Y_r(p) = sum of z(p + d) over the ring's offsets d.

        Y_r is a depthwise convolution with a ring-shaped 0/1 kernel and zero padding (so only valid
        positions count), run channels-last, which is where the CPU and GPU kernels are fast; the
        Gram GEMMs then run on the channels-last copy so both operands list positions in the same order.
        """
        h, w = self.map_size
        zcl = self._buf[:c, :fill].contiguous(memory_format=torch.channels_last)  # memory (C, H, W, images)
        a = zcl.permute(0, 2, 3, 1).reshape(c, npos)  # (C, N) view
        per_pos = a.view(c, h * w, fill)
        zsum = per_pos.sum(dim=2, dtype=torch.float64).to(self._acc_dev)  # (C, H*W)
        zsq = torch.einsum("cpb,cpb->cp", per_pos, per_pos).to(self._acc_dev, torch.float64)  # (C, H*W)
        for r in RINGS:
            if not self._ring_on[r]:
                continue
            kernel = self._ring_kernel[r].expand(fill, 1, 2 * r + 1, 2 * r + 1)
            y = F.conv2d(zcl, kernel, padding=r, groups=fill)  # (C, images, H, W), zero-padded ring sums
            yf = y.permute(0, 2, 3, 1).reshape(c, npos)  # (C, N), a view when y is channels-last
            g = _gram_upper(a, yf, self._gram[:c, :c], self._blocks_plain).to(self._acc_dev)
            del y, yf
            self._rs[r].add_(g)
            wr = self._ring_w[r]
            self._rsw[r].add_(zsum @ wr)  # sum_p w(p) z(p): the pooled first moments
            self._rqw[r].add_(zsq @ wr)  # sum_p w(p) z(p)^2: the pooled second moments
            self._rn[r] += int(round(float(wr.sum()))) * fill

    def _shift_reference(self, new_k: torch.Tensor) -> None:
        """Re-express the float64 sums around the reference new_k (z -> z - (new_k - K)), exactly."""
        n = self.n_in_sums()
        d = new_k.to(self._acc_dev) - self._k
        self._ss.add_(n * torch.outer(d, d) - torch.outer(d, self._s) - torch.outer(self._s, d))
        self._s.sub_(n * d)
        for r in RINGS:
            if not self._ring_on[r]:
                continue
            nr, sw = self._rn[r], self._rsw[r]
            self._rs[r].add_(nr * torch.outer(d, d) - torch.outer(d, sw) - torch.outer(sw, d))
            self._rqw[r].add_(nr * d * d - 2.0 * d * sw)
            sw.sub_(nr * d)
        self._k = new_k.to(self._acc_dev).clone()

    def n_in_sums(self) -> int:
        """Positions already folded into the float64 sums (excludes the buffered chunk)."""
        return self._n_sums

    def merge(self, other: CorrelationStats) -> CorrelationStats:
        """Fold another accumulator of the same channels and map size into this one (Chan et al.)."""
        if not other._initialised:
            return self
        if not self._initialised:
            raise HebbnasError(f"{self.name}: cannot merge into an empty accumulator")
        if other._channels != self._channels or other.map_size != self.map_size:
            raise HebbnasError(
                f"{self.name}: cannot merge stats of {other._channels} channels at {other.map_size} "
                f"into {self._channels} channels at {self.map_size}"
            )
        self._flush()
        other._flush()
        # Express the other's sums around our reference: z_other - (K_self - K_other).
        d = (self._k - other._k.to(self._acc_dev)).to(torch.float64)
        n = other.n_in_sums()
        s = other._s.to(self._acc_dev)
        self._ss.add_(other._ss.to(self._acc_dev) + n * torch.outer(d, d) - torch.outer(d, s) - torch.outer(s, d))
        self._s.add_(s - n * d)
        for r in RINGS:
            if not self._ring_on[r]:
                continue
            nr, sw = other._rn[r], other._rsw[r].to(self._acc_dev)
            rs = other._rs[r].to(self._acc_dev)
            self._rs[r].add_(rs + nr * torch.outer(d, d) - torch.outer(d, sw) - torch.outer(sw, d))
            self._rqw[r].add_(other._rqw[r].to(self._acc_dev) + nr * d * d - 2.0 * d * sw)
            self._rsw[r].add_(sw - nr * d)
            self._rn[r] += nr
        self.n += other.n
        self._n_sums += n
        self.n_images += other.n_images
        return self

    # -- results -----------------------------------------------------------------------------------

    def finalize(self) -> ModuleStats:
        """Flush the buffered chunk and return the statistics so far (feeding may continue)."""
        if not self._initialised or self.n == 0:
            raise HebbnasError(f"{self.name}: no activations were recorded")
        self._flush()
        n = self.n
        k = self._k.cpu().numpy()
        s = self._s.cpu().numpy()
        ss = _symmetric_from_upper(self._ss).cpu().numpy()
        zbar = s / n
        cov = ss / n - np.outer(zbar, zbar)
        var = np.clip(np.diag(cov).copy(), 0.0, None)
        mean = k + zbar
        dead = _dead_mask(mean, var, self._dead_rtol)
        corr = _normalise(cov, var, var, dead)
        np.fill_diagonal(corr, 1.0)
        rings: dict[int, np.ndarray | None] = {}
        pairs: dict[int, int] = {}
        for r in RINGS:
            if not self._ring_on.get(r, False) or self._rn[r] == 0:
                rings[r], pairs[r] = None, 0
                continue
            nr = self._rn[r]
            mu = self._rsw[r].cpu().numpy() / nr
            cov_r = _symmetric_from_upper(self._rs[r]).cpu().numpy() / nr - np.outer(mu, mu)
            var_r = np.clip(self._rqw[r].cpu().numpy() / nr - mu * mu, 0.0, None)
            dead_r = dead | _dead_mask(k + mu, var_r, self._dead_rtol)
            rings[r] = _readonly(_normalise(cov_r, var_r, var_r, dead_r))
            pairs[r] = nr
        return ModuleStats(
            n=n,
            n_images=self.n_images,
            map_size=tuple(self.map_size),
            mean=_readonly(mean),
            var=_readonly(var),
            corr=_readonly(corr),
            dead=_readonly(dead),
            corr_ring=rings,
            ring_pairs=pairs,
        )


# ------------------------------------------------------------------------------------------- probing


def _first_tensor(batch: object) -> torch.Tensor:
    """Inputs of a batch: the tensor itself, or the first element of an (inputs, labels) pair."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise HebbnasError(f"expected batches of tensors or (inputs, labels) pairs, got {type(batch).__name__}")


def probe_model(
    model: nn.Module,
    batches: Iterable[object],
    module_names: Sequence[str],
    device: torch.device | str | None = None,
    *,
    topology_hash: str = "",
    rings: bool = True,
    chunk_positions: int | None = None,
) -> ProbeResult:
    """Record the input statistics of the named submodules while ``model`` runs over ``batches``.

    The model runs in eval mode under ``torch.no_grad()``; its training flag and the hooks are
    restored/removed afterwards, also when a batch raises.

    Args:
        model: network whose submodules ``module_names`` receive (B, C, H, W) inputs.
        batches: iterable of input tensors or (inputs, labels) pairs.
        module_names: names for ``model.get_submodule`` (e.g. "inception4c").
        device: where to run; default the model's parameter device (CPU when it has none).
        topology_hash: the caller's topology identity, stored in the result.
        rings: also measure the spatial-offset rings.
        chunk_positions: see :class:`CorrelationStats`.
    """
    if not module_names:
        raise HebbnasError("probe_model needs at least one module name")
    if len(set(module_names)) != len(module_names):
        raise HebbnasError(f"duplicate module names: {list(module_names)}")
    if device is None:
        param = next(iter(model.parameters()), None)
        dev = param.device if param is not None else torch.device("cpu")
    else:
        dev = torch.device(device)
    modules: dict[str, nn.Module] = {}
    for name in module_names:
        try:
            modules[name] = model.get_submodule(name)
        except AttributeError:
            raise HebbnasError(f"model has no submodule named {name!r}") from None
    stats = {
        name: CorrelationStats(rings=rings, chunk_positions=chunk_positions, name=name) for name in module_names
    }

    def make_hook(name: str):  # noqa: ANN202 - torch hook signature
        def hook(module: nn.Module, args: tuple) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                raise HebbnasError(f"{name}: forward input is not a tensor")
            stats[name].update(args[0])

        return hook

    was_training = model.training
    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_pre_hook(make_hook(name)))
        model.eval()
        with torch.no_grad():
            for batch in batches:
                model(_first_tensor(batch).to(dev))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    out: dict[str, ModuleStats] = {}
    for name in module_names:
        if stats[name].n == 0:
            raise HebbnasError(f"{name}: received no activations (empty batches or module not used)")
        out[name] = stats[name].finalize()
    return ProbeResult(modules=out, topology_hash=topology_hash)


# --------------------------------------------------------------------------------------------- files


def save_probe(result: ProbeResult, path: str | os.PathLike[str]) -> None:
    """Write a probe as one ``.npz`` (no pickle): arrays under ``<module>/<field>``, JSON in ``__meta__``."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta_modules = []
    for name, st in result.modules.items():
        if "/" in name or name == "__meta__":
            raise HebbnasError(f"cannot save module name {name!r}: '/' and '__meta__' are reserved")
        arrays[f"{name}/mean"] = np.asarray(st.mean, dtype=np.float64)
        arrays[f"{name}/var"] = np.asarray(st.var, dtype=np.float64)
        arrays[f"{name}/corr"] = np.asarray(st.corr, dtype=np.float64)
        arrays[f"{name}/dead"] = np.asarray(st.dead, dtype=bool)
        for r, m in st.corr_ring.items():
            if m is not None:
                arrays[f"{name}/corr_ring{r}"] = np.asarray(m, dtype=np.float64)
        meta_modules.append(
            {
                "name": name,
                "channels": st.channels,
                "n": int(st.n),
                "n_images": int(st.n_images),
                "map_size": [int(v) for v in st.map_size],
                "ring_pairs": {str(r): int(v) for r, v in st.ring_pairs.items()},
                "rings": [int(r) for r in st.corr_ring],
            }
        )
    meta = {"format": _FORMAT, "version": _VERSION, "topology_hash": result.topology_hash, "modules": meta_modules}
    arrays["__meta__"] = np.array(json.dumps(meta))
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        raise HebbnasError(f"cannot write probe file {path}: {e.strerror or e}") from None


def load_probe(path: str | os.PathLike[str]) -> ProbeResult:
    """Read a probe written by :func:`save_probe`; a missing or corrupt file raises HebbnasError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise HebbnasError(f"cannot read probe file {path}: {e.strerror or e}") from None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays.pop("__meta__")))
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise ValueError(f"not a {_FORMAT} v{_VERSION} file")
        modules: dict[str, ModuleStats] = {}
        for m in meta["modules"]:
            name, c = m["name"], int(m["channels"])
            mean, var = arrays[f"{name}/mean"], arrays[f"{name}/var"]
            corr, dead = arrays[f"{name}/corr"], arrays[f"{name}/dead"]
            rings: dict[int, np.ndarray | None] = {}
            for r in m["rings"]:
                key = f"{name}/corr_ring{r}"
                rings[int(r)] = _readonly(arrays[key]) if key in arrays else None
            shapes_ok = (
                mean.shape == (c,)
                and var.shape == (c,)
                and dead.shape == (c,)
                and dead.dtype == bool
                and corr.shape == (c, c)
                and all(v is None or v.shape == (c, c) for v in rings.values())
            )
            if not shapes_ok:
                raise ValueError(f"arrays of {name} do not match {c} channels")
            modules[name] = ModuleStats(
                n=int(m["n"]),
                n_images=int(m["n_images"]),
                map_size=(int(m["map_size"][0]), int(m["map_size"][1])),
                mean=_readonly(mean),
                var=_readonly(var),
                corr=_readonly(corr),
                dead=_readonly(dead),
                corr_ring=rings,
                ring_pairs={int(r): int(v) for r, v in m["ring_pairs"].items()},
            )
        return ProbeResult(modules=modules, topology_hash=str(meta["topology_hash"]))
    except HebbnasError:
        raise
    except Exception as e:  # zipfile.BadZipFile, KeyError, ValueError, JSON errors, ...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HebbnasError(f"corrupt probe file {path}: {reason}") from None


def check_probe_matches(result: ProbeResult, topology_hash: str, expected_channels: Mapping[str, int]) -> None:
    """Raise HebbnasError unless the probe was taken on this topology (hash, modules, channel counts)."""
    if result.topology_hash != topology_hash:
        raise HebbnasError(
            f"probe file is from another topology: hash {result.topology_hash!r} != {topology_hash!r}"
        )
    missing = [n for n in expected_channels if n not in result.modules]
    if missing:
        raise HebbnasError(f"probe file is from another topology: modules {missing} were not probed")
    for name, c in expected_channels.items():
        got = result.modules[name].channels
        if got != int(c):
            raise HebbnasError(
                f"probe file is from another topology: {name} has {got} channels, expected {int(c)}"
            )
