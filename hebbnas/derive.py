"""From clusters to widths, and from widths to a topology that fits the MAC budget.

`fit` is shared by every strategy (`hebbnas.strategies`): whatever widths a strategy chose, one global
width multiplier, found by bisection, scales the stem and every Inception width; widths are rounded to a multiple (8 by
default), and a greedy pass then spends what rounding left of the budget, so the result uses the
budget instead of wasting up to a rounding step of it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from hebbnas.cluster import cluster_correlation, cluster_scales, summarize_clusters
from hebbnas.errors import HebbnasError
from hebbnas.probe import ModuleStats as ProbeModuleStats
from hebbnas.probe import ProbeResult, check_probe_matches
from hebbnas.topology import DEFAULT_INPUT, WIDTH_FIELDS, InceptionSpec, StemSpec, Topology, round_width

STEM_FIELDS = ("conv1", "conv2", "conv3")
_Key = tuple[str, str]  # ("stem", "conv3") or ("inception4c", "b2")


def _raw_widths(t: Topology, scale_stem: bool) -> dict[_Key, float]:
    raw: dict[_Key, float] = {}
    if scale_stem:
        raw.update({("stem", f): float(getattr(t.stem, f)) for f in STEM_FIELDS})
    for m in t.modules:
        for f, w in zip(WIDTH_FIELDS, m.widths):
            if w:
                raw[(m.name, f)] = float(w)
    return raw


def _apply(t: Topology, widths: dict[_Key, int], name: str) -> Topology:
    stem = t.stem
    if any(k[0] == "stem" for k in widths):
        stem = StemSpec(**{f: widths.get(("stem", f), getattr(t.stem, f)) for f in STEM_FIELDS})
    mods = []
    for m in t.modules:
        new = [widths.get((m.name, f), 0) if w else 0 for f, w in zip(WIDTH_FIELDS, m.widths)]
        mods.append(m.with_widths(new))
    return dataclasses.replace(t, stem=stem, modules=tuple(mods), name=name)


def _scaled(raw: dict[_Key, float], alpha: float, multiple: int) -> dict[_Key, int]:
    return {k: round_width(alpha * w, multiple) for k, w in raw.items()}


def irreducible_macs(t: Topology, input_shape: tuple[int, int, int] = DEFAULT_INPUT, scale_stem: bool = True) -> int:
    """MACs of the cheapest variant `fit` can reach: one channel per stem conv and per branch."""
    raw = _raw_widths(t, scale_stem)
    return _apply(t, {k: 1 for k in raw}, t.name).macs(input_shape)


def fit(
    t: Topology,
    budget: float,
    input_shape: tuple[int, int, int] = DEFAULT_INPUT,
    *,
    multiple: int = 8,
    scale_stem: bool = True,
    max_params: float | None = None,
    name: str | None = None,
) -> Topology:
    """The largest uniformly scaled copy of `t` with MACs at `input_shape` <= `budget`.

    The proportions of `t` (between modules and between branches) are what a strategy chose; `fit`
    only picks the overall size. Zero widths stay zero, so removed branches and reductions stay removed.

    Raises:
        HebbnasError: the budget is not a positive number, or below the irreducible cost.
    """
    if not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        raise HebbnasError(f"budget must be a positive number of MACs, got {budget!r}")
    if multiple < 1:
        raise HebbnasError(f"width multiple must be >= 1, got {multiple}")
    name = name or t.name
    raw = _raw_widths(t, scale_stem)

    def cost(w: dict[_Key, int]) -> tuple[int, int]:
        cand = _apply(t, w, name)
        return cand.macs(input_shape), cand.params()

    def ok(w: dict[_Key, int]) -> bool:
        macs, params = cost(w)
        return macs <= budget and (max_params is None or params <= max_params)

    floor = irreducible_macs(t, input_shape, scale_stem)
    if floor > budget:
        stem_note = "" if scale_stem else " (stem kept fixed)"
        raise HebbnasError(
            f"budget {budget:.4g} MACs is below the irreducible cost {floor:.4g} MACs of {t.name} at "
            f"{'x'.join(map(str, input_shape))}: stem + head + one channel per branch{stem_note}"
        )
    if not ok(_scaled(raw, 1e-9, multiple)):
        multiple = 1  # the budget sits between the 1-channel floor and the first multiple: drop the rounding
        if not ok(_scaled(raw, 1e-9, 1)):
            raise HebbnasError(f"no variant of {t.name} meets the budget {budget:.4g} MACs"
                               + (f" with at most {max_params:.4g} params" if max_params else ""))
    lo, hi = 1e-9, 1.0
    while ok(_scaled(raw, hi, multiple)):
        lo, hi = hi, hi * 2
        if hi > 1024:
            raise HebbnasError(f"budget {budget:.4g} MACs is too large to fill with {t.name} (>1024x its widths)")
    for _ in range(40):
        mid = (lo + hi) / 2
        if ok(_scaled(raw, mid, multiple)):
            lo = mid
        else:
            hi = mid
    widths = _scaled(raw, lo, multiple)
    widths = _fill(widths, raw, hi, multiple, ok)
    return _apply(t, widths, name)


def _fill(widths: dict[_Key, int], raw: dict[_Key, float], alpha_hi: float, multiple: int, ok: object) -> dict[_Key, int]:
    """Greedily add one multiple at a time where the rounded width is furthest below its target.

    Widths keep growing past the next size up while something still fits, so what rounding left of
    the budget is spent on the relatively narrowest widths rather than wasted.
    """
    widths = dict(widths)
    frozen: set[_Key] = set()
    while True:
        best, best_gap = None, -math.inf
        for k, w in widths.items():
            if k in frozen:
                continue
            gap = (alpha_hi * raw[k] - w) / raw[k]  # relative shortfall against the next size up
            if gap > best_gap:
                best, best_gap = k, gap
        if best is None:
            return widths
        trial = dict(widths)
        trial[best] += multiple
        if ok(trial):  # type: ignore[operator]
            widths = trial
        else:
            frozen.add(best)


# ---------------------------------------------------------------------------------------------
# derivation: clusters of a module's input -> that module's six widths

BRANCH_OF_SCALE = {1: "branch1", 3: "branch2", 5: "branch3"}
METHODS = ("average", "complete", "spectral")
ALLOCATIONS = ("clusters", "split", "pca", "redundancy")
"""`Policy.allocation`, the derivation policy: clusters decide module widths and branch split
("clusters"), or the branch split only ("split"); principal components decide module widths and clusters
the split ("pca"); a redundancy ranking moves MACs between modules of the probed topology ("redundancy").
The last two are defined in `hebbnas.policies`."""


@dataclass(frozen=True)
class Policy:
    """The derivation knobs a search tunes.

    Attributes:
        method: clustering of 1-|r| ("average", "complete" linkage, or "spectral").
        threshold: distance cut of the hierarchical clustering, in (0, 1); lower gives more clusters.
        partial: cluster the partial correlation after removing the per-position mean activation
            (the common activity level that lifts every ReLU correlation).
        scale_cut: a cluster whose within-cluster correlation at ring d keeps at least this fraction
            of its zero-offset value is spatially spread at that distance (scale 3 at d=1, 5 at d=2).
        reduction_ratio: width of a 1x1 reduction per cluster the branch behind it covers.
        pool_ratio: pool-projection width as a fraction of the module's cluster count.
        width_exponent: units per cluster grow as K**width_exponent across modules (1 = Arora's one
            unit per cluster; below 1 compresses the range between redundant and rich inputs).
        allocation: which of the derivation's two decisions the clusters make. ``"clusters"`` (the
            default): both how wide each module is (from its cluster count) and how it splits that
            width. ``"split"``: the split only; every module keeps the output width (#1x1 + #3x3 +
            #5x5 + pool proj) of the probed topology, and only its division between 1x1, 3x3, 5x5
            and pool (with the reductions in proportion) comes from the clusters' spatial scales.
            `width_exponent` has no effect then. ``"pca"``: the split as ``"split"``, and every module
            keeps k / C of the probed module's width, k the principal components of its input that hold
            `energy` of the variance, C its channels (PCA width, Garg, Panda & Roy 2020).
            ``"redundancy"``: no clustering; the probed topology's widths (its branch split kept) after
            `steps` moves of `step_share` of the Inception MACs each, from the modules whose input is
            most redundant (1 - effective rank / channels) to the least (`hebbnas.policies`).
        energy: "pca" only: the share of an input's variance its counted components hold.
        steps: "redundancy" only: the number of moves.
        step_share: "redundancy" only: the share of the Inception MACs one move takes.
    """

    method: str = "average"
    threshold: float = 0.5
    partial: bool = False
    scale_cut: float = 0.35
    reduction_ratio: float = 0.75
    pool_ratio: float = 0.15
    width_exponent: float = 1.0
    allocation: str = "clusters"
    energy: float = 0.99
    steps: int = 4
    step_share: float = 0.05

    def __post_init__(self) -> None:
        if self.allocation not in ALLOCATIONS:
            raise HebbnasError(f"unknown allocation {self.allocation!r} (known: {', '.join(ALLOCATIONS)})")
        if self.method not in METHODS:
            raise HebbnasError(f"unknown clustering method {self.method!r} (known: {', '.join(METHODS)})")
        if not 0.0 < float(self.threshold) < 1.0:
            raise HebbnasError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if not 0.0 < float(self.scale_cut) < 1.0:
            raise HebbnasError(f"scale_cut must be in (0, 1), got {self.scale_cut!r}")
        if float(self.reduction_ratio) <= 0 or float(self.pool_ratio) < 0 or not 0 < float(self.width_exponent) <= 2:
            raise HebbnasError("reduction_ratio must be > 0, pool_ratio >= 0, width_exponent in (0, 2]")
        if not 0.0 < float(self.energy) <= 1.0:
            raise HebbnasError(f"energy must be in (0, 1], got {self.energy!r}")
        if int(self.steps) != self.steps or self.steps < 0 or not 0.0 < float(self.step_share) < 1.0:
            raise HebbnasError(f"steps must be an integer >= 0 and step_share in (0, 1), got {self.steps!r}, "
                               f"{self.step_share!r}")

    @classmethod
    def from_knobs(cls, knobs: dict[str, object]) -> Policy:
        """Build from a search's sampled knobs; unknown knob names are an error, not silently ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(knobs) - names
        if extra:
            raise HebbnasError(f"unknown derivation knobs {sorted(extra)} (known: {', '.join(sorted(names))})")
        return cls(**knobs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClusterInfo:
    """One cluster of a module's input channels and the branch it became.

    Attributes:
        label: cluster id within the module (0..K-1).
        members: input channel indices.
        cohesion: mean |r| between distinct members (1.0 for a singleton).
        decay: within-cluster correlation at rings 1 and 2 relative to ring 0 (NaN if not measurable).
        scale: spatial scale 1, 3 or 5.
        branch: the branch it is assigned to (``branch1`` 1x1, ``branch2`` 3x3, ``branch3`` 5x5).
    """

    label: int
    members: tuple[int, ...]
    cohesion: float
    decay: tuple[float, float]
    scale: int
    branch: str

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class ModuleDerivation:
    """What the probe said about one Inception module's input, and the raw widths derived from it.

    Attributes:
        name: module name (``inception4c``).
        in_channels: channels of the module's input.
        map_size: (H, W) of the input at the probe resolution.
        dead: indices of dead (zero-variance) input channels.
        scale_measured: False when the map is too small to measure spatial spread; then the
            module's branch split is the base topology's, scaled to the cluster count.
        clusters: every cluster of the input.
        raw_widths: the six widths before scaling and fitting (cluster units).
        note: a one-line remark for the report.
        signal: what a policy other than the cluster ones read, as (name, value) pairs in report order
            (pca: components, their energy share, the kept share k / C; redundancy: the measure, its
            rank, the width factor, the MACs moved); empty for "clusters" and "split".
    """

    name: str
    in_channels: int
    map_size: tuple[int, int]
    dead: tuple[int, ...]
    scale_measured: bool
    clusters: tuple[ClusterInfo, ...]
    raw_widths: tuple[float, float, float, float, float, float]
    note: str = ""
    signal: tuple[tuple[str, float], ...] = ()

    @property
    def num_clusters(self) -> int:
        return len(self.clusters)

    def count(self, scale: int) -> int:
        return sum(1 for c in self.clusters if c.scale == scale)


@dataclass(frozen=True)
class Derivation:
    """A whole derivation: the policy, per-module clusters, and the unfitted derived topology."""

    base: Topology
    policy: Policy
    modules: tuple[ModuleDerivation, ...]
    topology: Topology

    def module(self, name: str) -> ModuleDerivation:
        for m in self.modules:
            if m.name == name:
                return m
        raise HebbnasError(f"derivation has no module {name!r}")


def derive_module(name: str, stats: ProbeModuleStats, probed: InceptionSpec, policy: Policy) -> ModuleDerivation:
    """Clusters of one module's input -> that module's six raw widths (in cluster units).

    One live cluster is one unit of the next layer (Arora et al.): scale-1 clusters become 1x1
    filters, scale-3 ones 3x3 filters, scale-5 ones 5x5 filters. A reduction is sized by the
    clusters its branch covers (the independent groups it must see), the pool projection by the
    module's cluster count. Where rings cannot be measured the probed module's own branch split is kept.
    """
    corr = stats.correlation(remove_common=policy.partial)
    labels = cluster_correlation(corr, method=policy.method, threshold=policy.threshold, dead=stats.dead)
    sc = cluster_scales(labels, stats.corr, stats.corr_ring, scale_cut=policy.scale_cut, dead=stats.dead)
    m1, m2 = sc.measurable
    infos = [
        ClusterInfo(c.label, c.members, 1.0 if c.size == 1 else c.cohesion,
                    (float(sc.ratios[c.label, 0]), float(sc.ratios[c.label, 1])), int(sc.scales[c.label]),
                    "dead" if c.dead else BRANCH_OF_SCALE[int(sc.scales[c.label])])
        for c in summarize_clusters(labels, corr, stats.dead)
    ]
    live = [c for c in infos if c.branch != "dead"]
    k = max(len(live), 1)
    unit = k ** (policy.width_exponent - 1.0)  # total width grows as K**width_exponent
    n = {s: sum(1 for c in live if c.scale == s) for s in (1, 3, 5)}
    h, w = stats.map_size
    note = ""
    if not m1:
        # no spatial offsets fit in the map: keep the probed module's split of 1x1 / 3x3 / 5x5 outputs
        split = np.array([probed.b1, probed.b2, probed.b3], dtype=float)
        n1, n3, n5 = (k * split / split.sum()) if split.sum() else (k, 0.0, 0.0)
        note = f"spatial scale not measurable at {h}x{w}: branch split of {probed.name} kept"
        infos = [c if c.branch == "dead" else dataclasses.replace(c, branch="branch1/2/3 (split kept)") for c in infos]
    elif not m2:
        # 3x3 spread is measurable, 5x5 is not: share the spread clusters as the probed module does
        spread = n[3] + n[5]
        both = probed.b2 + probed.b3
        n1 = float(n[1])
        n3 = spread * probed.b2 / both if both else float(spread)
        n5 = spread - n3
        note = f"5x5 spread not measurable at {h}x{w}: spread clusters shared between 3x3 and 5x5 as in {probed.name}"
    else:
        n1, n3, n5 = float(n[1]), float(n[3]), float(n[5])
    r, p = policy.reduction_ratio, policy.pool_ratio
    raw = (n1, r * (n3 + n5), n3, r * n5, n5, p * k)
    raw_widths = tuple(float(v * unit) for v in raw)
    if raw_widths[0] + raw_widths[2] + raw_widths[4] + raw_widths[5] <= 0:
        raw_widths = (float(unit), 0.0, 0.0, 0.0, 0.0, 0.0)
    return ModuleDerivation(
        name=name,
        in_channels=stats.channels,
        map_size=(int(h), int(w)),
        dead=tuple(int(i) for i in np.flatnonzero(stats.dead)),
        scale_measured=m1,
        clusters=tuple(infos),
        raw_widths=raw_widths,  # type: ignore[arg-type]
        note=note,
    )


def _integer_widths(raw: dict[str, tuple[float, ...]], k: float) -> dict[str, tuple[int, ...]]:
    return {n: tuple(max(1, int(round(k * v))) if v > 0 else 0 for v in ws) for n, ws in raw.items()}


def _match_scale(probed: Topology, raw: dict[str, tuple[float, ...]]) -> Topology:
    """Integer widths whose Inception MACs match the probed topology's, so `fit` sees real proportions.

    The probe decides how width is shared between modules and branches, not how much the Inception
    modules cost relative to the stem: that ratio is the probed network's, and `fit` scales both.
    """
    target = probed.macs()
    lo, hi = 1e-3, 1.0
    while probed.with_widths(_integer_widths(raw, hi)).macs() < target and hi < 1e6:
        lo, hi = hi, hi * 2
    for _ in range(40):
        mid = (lo + hi) / 2
        if probed.with_widths(_integer_widths(raw, mid)).macs() <= target:
            lo = mid
        else:
            hi = mid
    return probed.with_widths(_integer_widths(raw, lo))


def _keep_module_width(d: ModuleDerivation, probed: InceptionSpec) -> ModuleDerivation:
    """Rescale a module's raw widths so its output width is the probed module's (split-only policy)."""
    raw = d.raw_widths
    outputs = raw[0] + raw[2] + raw[4] + raw[5]
    factor = probed.out_channels / outputs if outputs > 0 else 0.0
    note = (d.note + "; " if d.note else "") + f"split only: output width {probed.out_channels} of {probed.name} kept"
    return dataclasses.replace(d, raw_widths=tuple(float(v * factor) for v in raw), note=note)  # type: ignore[arg-type]


def _pca_modules(mods: tuple[ModuleDerivation, ...], probe: ProbeResult,
                 policy: Policy) -> tuple[ModuleDerivation, ...]:
    """Each split-only module times k / C, k the principal components of its input that hold `energy`."""
    from hebbnas.policies import pca_signals

    sig = pca_signals(probe, [d.name for d in mods], policy.energy)
    out = []
    for d in mods:
        s = sig[d.name]
        note = (f"{d.note}; " if d.note else "") + (f"pca: {s.components} of {s.channels} components hold "
                                                     f"{s.energy_share:.3f} of the variance: width x{s.share:.3f}")
        out.append(dataclasses.replace(
            d, raw_widths=tuple(float(v * s.share) for v in d.raw_widths), note=note,  # type: ignore[arg-type]
            signal=(("components", float(s.components)), ("energy share", s.energy_share), ("kept share", s.share))))
    return tuple(out)


def _redundancy_modules(probed: Topology, probe: ProbeResult, policy: Policy) -> tuple[ModuleDerivation, ...]:
    """The probed widths, each module times its factor from the redundancy ranking (no clustering)."""
    from hebbnas.policies import module_redundancy, redundancy_moves

    names = probed.module_names
    moves = redundancy_moves(probed, module_redundancy(probe, names), steps=int(policy.steps),
                             step_share=float(policy.step_share), input_shape=(probed.in_channels, *DEFAULT_INPUT[1:]))
    out = []
    for m in probed.modules:
        mv, st = moves[m.name], probe.modules[m.name]
        how = (f"gives {-mv.moved / 1e6:.3g}M MACs" if mv.moved < 0 else f"gets {mv.moved / 1e6:.3g}M MACs"
               if mv.moved > 0 else "unchanged")
        note = (f"redundancy {mv.redundancy:.3f} (rank {mv.rank} of {len(names)}, 1 = most redundant): {how}, "
                f"widths x{mv.factor:.3f} of {m.name}'s, branch split kept; clusters not used")
        out.append(ModuleDerivation(
            name=m.name, in_channels=st.channels, map_size=(int(st.map_size[0]), int(st.map_size[1])),
            dead=tuple(int(i) for i in np.flatnonzero(st.dead)), scale_measured=bool(st.ring_measurable.get(1)),
            clusters=(), raw_widths=tuple(float(w * mv.factor) for w in m.widths),  # type: ignore[arg-type]
            note=note, signal=(("redundancy", mv.redundancy), ("rank", float(mv.rank)), ("factor", mv.factor),
                               ("MACs moved", mv.moved))))
    return tuple(out)


def derive(probed: Topology, probe: ProbeResult, policy: Policy | None = None, name: str | None = None) -> Derivation:
    """Derive every module's widths from the probe of `probed` (the network that was probed).

    Raises:
        HebbnasError: the probe was taken on another topology.
    """
    policy = policy or Policy()
    check_probe_matches(probe, probed.hash(), probed.in_channels_of())
    if policy.allocation == "redundancy":
        mods = _redundancy_modules(probed, probe, policy)
    else:
        mods = tuple(derive_module(m.name, probe.modules[m.name], m, policy) for m in probed.modules)
    if policy.allocation in ("split", "pca"):
        mods = tuple(_keep_module_width(d, probed.module(d.name)) for d in mods)
    if policy.allocation == "pca":
        mods = _pca_modules(mods, probe, policy)
    topo = _match_scale(probed, {m.name: m.raw_widths for m in mods})
    return Derivation(base=probed, policy=policy, modules=mods,
                      topology=dataclasses.replace(topo, name=name or f"{probed.name}-hebbian"))


def derive_topology(probed: Topology, probe: ProbeResult, **knobs: object) -> Topology:
    """The unfitted derived topology for a search trial's knobs (pass it to `fit`)."""
    return derive(probed, probe, Policy.from_knobs(knobs)).topology
