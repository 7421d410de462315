"""Streaming channel-correlation statistics of activation maps: `CorrelationStats`.

The probe answers one question per Inception input: which channels fire together, at the same
position (ring 0) and at neighbouring positions (rings 1 and 2, Chebyshev distance 1 and 2). Memory is
O(C^2) whatever the number of images, and the cost is dominated by float32 GEMMs on the activations'
own device.

(About 450 lines, on purpose: the accumulator's numerics (shifted chunks, float64 merges, rings, re-shifts)
must be read in one place to be trusted.)

Numerics (docs/probe-and-report.md, "Probe numerics"): raw float32 moments are useless at large means, so every
chunk of activations is shifted by a reference mean ``K`` while it is copied into the chunk buffer
(``x - K`` is exact in float32 when ``x`` is near ``K``), the GEMMs run on the shifted data in true
float32 (no autocast, no TF32), and the chunk sums are accumulated in float64 on the CPU. ``K`` is the
first batch's mean; when a later chunk's mean drifts more than ``reshift_sigmas`` of its standard
deviations from it, the chunk is re-centred and the float64 sums are re-expressed around the new
reference (the exact rank-1 update of Chan et al.'s parallel algorithm); :meth:`CorrelationStats.merge`
combines two accumulators the same way.

Cost (analysis/bench_probe.py): the ring-0 Gram matrix is symmetric, so only its upper triangle is
computed, by recursive halving with one batched GEMM per level (~0.56-0.75 of a full GEMM's flops); the
NCHW -> (C, N) layout change is fused with the shift into the one copy the buffer needs anyway.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from hebbnas.errors import HebbnasError
from hebbnas.probe.stats import RINGS, ModuleStats, readonly

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


class _TriGram:
    """Upper-triangular Gram products ``a @ b.T`` in float32, one batched GEMM per recursion level.

    The R x R result (R = rows padded to ``block * 2**levels``) is split recursively in halves: each
    level computes its off-diagonal blocks (2**(l-1) of them, all in one ``bmm``) and the leaves are the
    2**levels diagonal blocks (one more ``bmm``). The flops approach half of a full GEMM (0.75, 0.625,
    0.5625 of it for 1, 2, 3 levels) while every GEMM stays large, and batching the blocks of a level
    keeps all threads busy (separate small ``mm`` calls parallelise poorly). Exact for ``b = a``; for
    ``b != a`` it is the upper triangle of a product known to be symmetric (the ring sums).
    """

    def __init__(self, rows: int, min_block: int, device: torch.device) -> None:
        levels = 0
        while levels < 6 and math.ceil(rows / 2 ** (levels + 1)) >= min_block:
            levels += 1
        self.levels = levels
        self.block = math.ceil(rows / 2**levels)
        self.rows = self.block << levels  # padded row count the operands must have
        self.out = torch.zeros(self.rows, self.rows, dtype=torch.float32, device=device)  # lower part stays 0

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: (rows, N) float32, rows may be strided; returns the (rows, rows) upper-block result."""
        r, out = self.rows, self.out
        base = out.storage_offset()
        for level in range(1, self.levels + 1):
            size, count = r >> level, 1 << (level - 1)
            left = a.view(count, 2, size, -1)[:, 0]
            right = b.view(count, 2, size, -1)[:, 1]
            prod = torch.bmm(left, right.transpose(1, 2))  # (count, size, size)
            out.as_strided((count, size, size), (2 * size * r + 2 * size, r, 1), base + size).copy_(prod)
        count, size = 1 << self.levels, self.block
        prod = torch.bmm(a.view(count, size, -1), b.view(count, size, -1).transpose(1, 2))
        out.as_strided((count, size, size), (size * r + size, r, 1), base).copy_(prod)
        return out


def _symmetric_from_upper(m: np.ndarray) -> np.ndarray:
    """Full symmetric matrix from the upper triangle (the lower one may hold garbage)."""
    upper = np.triu(m)
    return upper + np.triu(m, k=1).T


def _ring_weights(h: int, w: int, ring: int) -> torch.Tensor:
    """(H, W) number of ring offsets d for which position p + d lies inside the map."""
    ones = torch.ones(1, 1, h, w, dtype=torch.float64)
    outer = F.avg_pool2d(ones, 2 * ring + 1, 1, ring, count_include_pad=True, divisor_override=1)
    inner = F.avg_pool2d(ones, 2 * ring - 1, 1, ring - 1, count_include_pad=True, divisor_override=1)
    return (outer - inner)[0, 0]


def _ring_measurable(h: int, w: int, ring: int) -> bool:
    """A ring is measured only when every offset direction has a valid pair: min(H, W) > ring."""
    return min(h, w) > ring


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


# ------------------------------------------------------------------------------------------ accumulator


class CorrelationStats:
    """Streaming mean / variance / correlation (rings 0, 1, 2) of (B, C, H, W) activation maps.

    Activations are copied (shifted by the reference mean, in layout (C, images, H, W)) into a chunk
    buffer of about ``chunk_positions`` positions; a full chunk costs one upper-triangular Gram GEMM
    for ring 0 and one per ring (on the activations' device, float32), then a float64 accumulation on
    the CPU (numpy: O(C^2) work per chunk, no device float64 needed). State is
    O(C^2 + C * chunk_positions), independent of how many samples are fed.
    """

    def __init__(
        self,
        channels: int | None = None,
        *,
        rings: bool = True,
        chunk_positions: int | None = None,
        min_block: int = 96,
        dead_rtol: float = 1e-6,
        reshift_sigmas: float = 3.0,
        name: str = "activations",
    ) -> None:
        """Create an empty accumulator.

        Args:
            channels: expected C, or None to take it from the first batch.
            rings: also measure the spatial-offset rings 1 and 2 (two convolutions + two half-GEMMs).
            chunk_positions: positions per GEMM chunk; default max(32768, 64 MiB / (4 (C+1))).
            min_block: diagonal block size where the triangular recursion stops.
            dead_rtol: a channel is dead when std <= dead_rtol * max(|mean|, largest std).
            reshift_sigmas: re-centre a chunk whose mean is this many of its stds from the reference.
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
        """Allocate the chunk buffer and float64 sums for the first batch's shape, device and mean."""
        _, c, h, w = x.shape
        dev = x.device
        self._dev = dev
        self._channels, self.map_size = c, (h, w)
        hw = h * w
        target = self._chunk_positions or max(32768, _DEFAULT_CHUNK_BYTES // (4 * (c + 1)))
        self._cap = max(1, math.ceil(target / hw))  # images per chunk
        self._fill = 0
        # (C+1, images, H, W): shifted activations; row C is ones so the Gram's column C holds the sums.
        self._tri = _TriGram(c + 1, self._min_block, dev)
        self._buf = torch.empty(self._tri.rows, self._cap, h, w, dtype=torch.float32, device=dev)
        self._buf[c].fill_(1.0)
        self._buf[c + 1 :].zero_()  # padding rows up to the GEMM block size
        # Reference shift K: the first batch's mean, rounded to float32 so that x - K is exact near K.
        k32 = torch.mean(x, dim=(0, 2, 3))  # float32 is plenty: K only has to be near the mean
        self._set_k32(k32.cpu().numpy().astype(np.float64))
        self._k = self._k32_np.copy()  # reference of the float64 sums below
        self._s = np.zeros(c)  # sum of shifted values
        self._ss = np.zeros((c, c))  # sum of shifted outer products (upper triangle valid)
        self._ring_on = {r: self.rings and _ring_measurable(h, w, r) for r in RINGS}
        self._ring_kernel: dict[int, torch.Tensor] = {}
        self._ring_w: dict[int, np.ndarray] = {}
        self._rs: dict[int, np.ndarray] = {}
        self._rsw: dict[int, np.ndarray] = {}
        self._rqw: dict[int, np.ndarray] = {}
        self._rn: dict[int, int] = {r: 0 for r in RINGS}
        for r in RINGS:
            if not self._ring_on[r]:
                continue
            kernel = torch.ones(2 * r + 1, 2 * r + 1)
            kernel[1:-1, 1:-1] = 0.0  # the ring's offsets only
            self._ring_kernel[r] = kernel.view(1, 1, 2 * r + 1, 2 * r + 1).to(dev)
            self._ring_w[r] = _ring_weights(h, w, r).reshape(-1).numpy()  # (H*W,) pairs per position
            self._rs[r] = np.zeros((c, c))
            self._rsw[r] = np.zeros(c)
            self._rqw[r] = np.zeros(c)
        self._tri_ring = _TriGram(c, self._min_block, dev) if any(self._ring_on.values()) else None
        self._initialised = True

    def _set_k32(self, k: np.ndarray) -> None:
        """Use the float32 value of k (C,) as the shift of the data copied from now on."""
        k32 = k.astype(np.float32)
        self._k32_np = k32.astype(np.float64)  # exactly what the buffer is shifted by
        self._k32 = torch.from_numpy(k32).to(self._dev).view(-1, 1, 1, 1)

    def state_nbytes(self) -> int:
        """Bytes held by buffers and accumulators; constant once the first batch has been seen."""
        if not self._initialised:
            return 0
        tensors = [self._buf, self._tri.out, self._k32, *self._ring_kernel.values()]
        if self._tri_ring is not None:
            tensors.append(self._tri_ring.out)
        arrays = [self._k, self._k32_np, self._s, self._ss, *self._ring_w.values()]
        arrays += [*self._rs.values(), *self._rsw.values(), *self._rqw.values()]
        return sum(t.numel() * t.element_size() for t in tensors) + sum(a.nbytes for a in arrays)

    def n_in_sums(self) -> int:
        """Positions already folded into the float64 sums (excludes the buffered chunk)."""
        return self._n_sums

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

    @staticmethod
    def _host(g: torch.Tensor) -> np.ndarray:
        """A device result as a host array (shared memory on the CPU: valid until the next GEMM)."""
        return g.numpy() if g.device.type == "cpu" else g.cpu().numpy()

    def _flush(self) -> None:
        """Turn the buffered chunk into float64 sums; the buffer is then empty."""
        if not self._initialised or self._fill == 0:
            return
        c, fill = self._channels, self._fill
        h, w = self.map_size
        npos = fill * h * w
        a = self._buf[:, :fill].reshape(self._tri.rows, npos)  # (C+1+pad, N) view, rows strided
        chunk_k = self._k32_np  # the buffer holds x - chunk_k
        with _exact_fp32(self._dev):
            g = self._host(self._tri(a, a))
            s = g[:c, c].astype(np.float64)
            zbar = s / npos
            var_b = np.maximum(np.diagonal(g)[:c] / npos - zbar * zbar, 0.0)
            tiny = 4 * np.finfo(np.float32).eps * np.abs(chunk_k)
            drift = (zbar * zbar > self._reshift_sigmas**2 * var_b) & (np.abs(zbar) > tiny)
            if drift.any():
                # The chunk's mean is far from the reference, so its float32 GEMM would lose digits:
                # re-centre the chunk on the device and redo the GEMM.
                delta32 = zbar.astype(np.float32)
                self._buf[:c, :fill].sub_(torch.from_numpy(delta32).to(self._dev).view(c, 1, 1, 1))
                chunk_k = chunk_k + delta32.astype(np.float64)
                g = self._host(self._tri(a, a))
                s = g[:c, c].astype(np.float64)
                self._set_k32(chunk_k)  # later chunks start from the new reference
            if not np.array_equal(chunk_k, self._k):
                self._shift_reference(chunk_k)  # exact float64 re-expression (Chan et al.)
            self._ss += g[:c, :c]
            self._s += s
            if any(self._ring_on.values()):
                self._flush_rings(c, fill, npos)
        self._n_sums += npos
        self._fill = 0

    def _flush_rings(self, c: int, fill: int, npos: int) -> None:
        """Ring statistics of the buffered chunk: Y_r(p) = sum of z(p + d) over the ring's offsets d.

        Y_r is a depthwise convolution with a ring-shaped 0/1 kernel and zero padding (so only valid
        positions count), run channels-last, which is where the CPU and GPU kernels are fast; the
        Gram GEMMs then run on the channels-last copy so both operands list positions in the same order.
        """
        h, w = self.map_size
        tri = self._tri_ring
        # Channels-last copy, padded with zero rows to the GEMM block size: memory (rows, H, W, images).
        zcl = torch.empty(tri.rows, fill, h, w, device=self._dev, memory_format=torch.channels_last)
        zcl[:c].copy_(self._buf[:c, :fill])
        zcl[c:].zero_()
        a = zcl.permute(0, 2, 3, 1).reshape(tri.rows, npos)  # (rows, N) view
        per_pos = a[:c].view(c, h * w, fill)
        zsum = per_pos.sum(dim=2).cpu().numpy().astype(np.float64)  # (C, H*W)
        zsq = torch.einsum("cpb,cpb->cp", per_pos, per_pos).cpu().numpy().astype(np.float64)  # (C, H*W)
        for r in RINGS:
            if not self._ring_on[r]:
                continue
            kernel = self._ring_kernel[r].expand(fill, 1, 2 * r + 1, 2 * r + 1)
            y = F.conv2d(zcl, kernel, padding=r, groups=fill)  # (rows, images, H, W), zero-padded ring sums
            yf = y.permute(0, 2, 3, 1).reshape(tri.rows, npos)  # (rows, N), a view when channels-last
            self._rs[r] += self._host(tri(a, yf))[:c, :c]
            del y, yf
            wr = self._ring_w[r]
            self._rsw[r] += zsum @ wr  # sum_p w(p) z(p): the pooled first moments
            self._rqw[r] += zsq @ wr  # sum_p w(p) z(p)^2: the pooled second moments
            self._rn[r] += int(round(float(wr.sum()))) * fill

    def _shift_reference(self, new_k: np.ndarray) -> None:
        """Re-express the float64 sums around the reference new_k (z -> z - (new_k - K)), exactly."""
        n = self._n_sums
        d = new_k - self._k
        self._ss += n * np.outer(d, d) - np.outer(d, self._s) - np.outer(self._s, d)
        self._s -= n * d
        for r in RINGS:
            if not self._ring_on[r]:
                continue
            nr, sw = self._rn[r], self._rsw[r]
            self._rs[r] += nr * np.outer(d, d) - np.outer(d, sw) - np.outer(sw, d)
            self._rqw[r] += nr * d * d - 2.0 * d * sw
            sw -= nr * d
        self._k = new_k.copy()

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
        with _exact_fp32(self._dev):
            self._flush()
        with _exact_fp32(other._dev):
            other._flush()
        # Express the other's sums around our reference: z_other - (K_self - K_other).
        d = self._k - other._k
        n, s = other._n_sums, other._s
        self._ss += other._ss + n * np.outer(d, d) - np.outer(d, s) - np.outer(s, d)
        self._s += s - n * d
        for r in RINGS:
            if not self._ring_on[r]:
                continue
            nr, sw = other._rn[r], other._rsw[r]
            self._rs[r] += other._rs[r] + nr * np.outer(d, d) - np.outer(d, sw) - np.outer(sw, d)
            self._rqw[r] += other._rqw[r] + nr * d * d - 2.0 * d * sw
            self._rsw[r] += sw - nr * d
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
        with _exact_fp32(self._dev):
            self._flush()
        n = self.n
        zbar = self._s / n
        cov = _symmetric_from_upper(self._ss) / n - np.outer(zbar, zbar)
        var = np.clip(np.diag(cov).copy(), 0.0, None)
        mean = self._k + zbar
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
            mu = self._rsw[r] / nr
            cov_r = _symmetric_from_upper(self._rs[r]) / nr - np.outer(mu, mu)
            var_r = np.clip(self._rqw[r] / nr - mu * mu, 0.0, None)
            dead_r = dead | _dead_mask(self._k + mu, var_r, self._dead_rtol)
            rings[r] = readonly(_normalise(cov_r, var_r, var_r, dead_r))
            pairs[r] = nr
        return ModuleStats(
            n=n,
            n_images=self.n_images,
            map_size=tuple(self.map_size),
            mean=readonly(mean),
            var=readonly(var),
            corr=readonly(corr),
            dead=readonly(dead),
            corr_ring=rings,
            ring_pairs=pairs,
        )
