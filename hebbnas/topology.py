"""The topology: a frozen, JSON-serialisable GoogLeNet variant and its closed-form costs.

Everything else (the model, the probe keys, reports, exports) is built from a `Topology`, so its
field names are the vocabulary of the whole system: an Inception module `inception4c` has the six
widths of Table 1 of the paper (#1x1, #3x3red, #3x3, #5x5red, #5x5, pool proj) and the kernel of its
"5x5" branch (torchvision's layout uses 3 there).

Costs are multiply-accumulates (MACs) of convolutions and linear layers for one image, counted in
closed form; tests check them against `FlopCounterMode` (FLOPs / 2) on the built module.

(About 500 lines: the spec, its named base tables, its JSON form and its closed-form costs are one idea,
read together when a field changes.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hebbnas.errors import HebbnasError

WIDTH_FIELDS = ("b1", "b2_red", "b2", "b3_red", "b3", "b4")
"""The six Inception widths, in the paper's column order: #1x1, #3x3red, #3x3, #5x5red, #5x5, pool proj."""
FIELD_INDEX = {f: i for i, f in enumerate(WIDTH_FIELDS)}
"""A width field's position in `InceptionSpec.widths`."""
BRANCHES: tuple[str, ...] = ("b1", "b2", "b3", "b4")
"""The four branches, named by their output-width field, in concatenation order (1x1, 3x3, 5x5, pool)."""
BRANCH_FIELDS: dict[str, tuple[str, ...]] = {"b1": ("b1",), "b2": ("b2_red", "b2"), "b3": ("b3_red", "b3"),
                                              "b4": ("b4",)}
"""Each branch's width fields: its 1x1 reduction (if any), then its output width."""
REDUCTION_FIELDS: tuple[str, ...] = ("b2_red", "b3_red")

PAPER_COLUMNS = ("#1x1", "#3x3red", "#3x3", "#5x5red", "#5x5", "pool proj")
BN_EPS = 0.001
DEFAULT_INPUT = (3, 224, 224)


@dataclass(frozen=True)
class InceptionSpec:
    """One Inception module. A zero width removes its branch; a zero reduction feeds the input directly.

    Attributes:
        name: module name in the model, e.g. ``inception4c``.
        b1: #1x1 output channels (branch1).
        b2_red: #3x3red, the 1x1 reduction in front of the 3x3 (0 = no reduction).
        b2: #3x3 output channels (branch2).
        b3_red: #5x5red (0 = no reduction).
        b3: #5x5 output channels (branch3).
        b4: pool proj, the 1x1 after the 3x3 max-pool (branch4).
        b3_kernel: kernel of branch3 (5 in the paper, 3 in torchvision).
    """

    name: str
    b1: int
    b2_red: int
    b2: int
    b3_red: int
    b3: int
    b4: int
    b3_kernel: int = 5

    @property
    def widths(self) -> tuple[int, int, int, int, int, int]:
        return (self.b1, self.b2_red, self.b2, self.b3_red, self.b3, self.b4)

    @property
    def out_channels(self) -> int:
        return self.b1 + self.b2 + self.b3 + self.b4

    def with_widths(self, widths: tuple[int, ...] | list[int]) -> InceptionSpec:
        """Copy with new widths; reductions of removed branches are dropped so the spec stays canonical."""
        b1, b2_red, b2, b3_red, b3, b4 = (int(w) for w in widths)
        return dataclasses.replace(
            self, b1=b1, b2_red=b2_red if b2 else 0, b2=b2, b3_red=b3_red if b3 else 0, b3=b3, b4=b4
        )


@dataclass(frozen=True)
class PoolSpec:
    """A stride-2, ceil-mode max-pool placed after the named Inception module."""

    after: str
    kernel: int = 3


@dataclass(frozen=True)
class StemSpec:
    """conv1 7x7/2 -> maxpool 3x3/2 -> conv2 1x1 -> conv3 3x3 -> maxpool 3x3/2, as in the paper."""

    conv1: int = 64
    conv2: int = 64
    conv3: int = 192


@dataclass(frozen=True)
class Topology:
    """A GoogLeNet variant; the single source of truth for models, costs, probes and exports."""

    name: str
    modules: tuple[InceptionSpec, ...]
    stem: StemSpec = field(default_factory=StemSpec)
    pools: tuple[PoolSpec, ...] = (PoolSpec("inception3b", 3), PoolSpec("inception4e", 3))
    num_classes: int = 1000
    in_channels: int = 3
    dropout: float = 0.4
    aux_after: tuple[str, ...] = ("inception4a", "inception4d")

    def __post_init__(self) -> None:
        validate(self)

    # -- convenience -------------------------------------------------------------------------
    def module(self, name: str) -> InceptionSpec:
        for m in self.modules:
            if m.name == name:
                return m
        raise HebbnasError(f"topology {self.name!r} has no module {name!r}")

    @property
    def module_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modules)

    def in_channels_of(self) -> dict[str, int]:
        """Input channels of every Inception module (the probe's C per module)."""
        out: dict[str, int] = {}
        c = self.stem.conv3
        for m in self.modules:
            out[m.name] = c
            c = m.out_channels
        return out

    def with_classes(self, num_classes: int) -> Topology:
        return dataclasses.replace(self, num_classes=int(num_classes))

    def with_widths(self, widths: Mapping[str, tuple[int, ...] | list[int]], name: str | None = None) -> Topology:
        """Copy with the widths of the named modules replaced (others kept)."""
        mods = tuple(m.with_widths(widths[m.name]) if m.name in widths else m for m in self.modules)
        return dataclasses.replace(self, modules=mods, name=name or self.name)

    def widths(self) -> dict[str, tuple[int, ...]]:
        return {m.name: m.widths for m in self.modules}

    def narrowed(self, width: float, name: str | None = None) -> Topology:
        """A uniformly narrowed (or widened) copy: every stem and Inception width times `width`.

        Widths are rounded to the nearest integer, and a non-zero width stays at least 1, so no branch
        or reduction disappears; zero widths stay zero. This is the width proxy: a narrow copy of a
        candidate trains at a larger resolution for the cost of the full-width one at a small one.
        The budget is never counted on the narrowed copy, only on the full-width topology.

        Raises:
            HebbnasError: `width` is not a positive finite number.
        """
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
            raise HebbnasError(f"width must be a positive number, got {width!r}")

        def scale(w: int) -> int:
            return max(1, int(math.floor(w * width + 0.5))) if w else 0

        stem = StemSpec(conv1=scale(self.stem.conv1), conv2=scale(self.stem.conv2), conv3=scale(self.stem.conv3))
        mods = tuple(m.with_widths(tuple(scale(w) for w in m.widths)) for m in self.modules)
        return dataclasses.replace(self, stem=stem, modules=mods, name=name or f"{self.name}-w{width:g}")

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Topology:
        return from_dict(d)

    @classmethod
    def from_json(cls, text: str) -> Topology:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise HebbnasError(f"malformed topology JSON: {e}") from None
        return from_dict(d)

    def hash(self) -> str:
        """Short content hash of the architecture (name excluded), for probe files and trial rows."""
        d = self.to_dict()
        d.pop("name")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    # -- costs ------------------------------------------------------------------------------
    def layers(self, input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> list[LayerCost]:
        return layer_costs(self, input_shape)

    def macs(self, input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> int:
        """Inference MACs (conv + linear, no aux heads) for one image of shape (C, H, W)."""
        return sum(lc.macs for lc in layer_costs(self, input_shape))

    def params(self, aux: bool = False) -> int:
        """Parameter count of the built module (BatchNorm affine included), aux heads optional."""
        n = sum(lc.params for lc in layer_costs(self, (self.in_channels, 224, 224)))
        if aux:
            n += sum(aux_head_params(c, self.num_classes) for c in self.aux_channels().values())
        return n

    def aux_channels(self) -> dict[str, int]:
        return {name: self.module(name).out_channels for name in self.aux_after}

    def module_costs(self, input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> dict[str, tuple[int, int]]:
        """(MACs, params) per top-level block: stem, each Inception module, head."""
        out: dict[str, list[int]] = {}
        for lc in layer_costs(self, input_shape):
            block = lc.name.split(".")[0]
            block = block if block.startswith("inception") else ("head" if block == "fc" else "stem")
            acc = out.setdefault(block, [0, 0])
            acc[0] += lc.macs
            acc[1] += lc.params
        return {k: (v[0], v[1]) for k, v in out.items()}


@dataclass(frozen=True)
class LayerCost:
    """One conv/linear layer: its name in the model, output shape, MACs and params (with its BN)."""

    name: str
    out_shape: tuple[int, int, int]
    macs: int
    params: int


# ---------------------------------------------------------------------------------------------
# validation and (de)serialisation


def validate(t: Topology) -> None:
    """Reject topologies that cannot be built, with a message that names the problem."""
    if not t.modules:
        raise HebbnasError(f"topology {t.name!r} has no Inception modules")
    names = [m.name for m in t.modules]
    if len(set(names)) != len(names):
        raise HebbnasError(f"topology {t.name!r} has duplicate module names")
    for m in t.modules:
        for f in WIDTH_FIELDS:
            w = getattr(m, f)
            if not isinstance(w, int) or isinstance(w, bool) or w < 0:
                raise HebbnasError(f"{m.name}.{f} must be a non-negative integer, got {w!r}")
        if m.out_channels <= 0:
            raise HebbnasError(f"{m.name} has no branch left (all output widths are 0)")
        if m.b3_kernel not in (1, 3, 5, 7):
            raise HebbnasError(f"{m.name}.b3_kernel must be 1, 3, 5 or 7, got {m.b3_kernel!r}")
    for p in t.pools:
        if p.after not in names:
            raise HebbnasError(f"pool after unknown module {p.after!r}")
        if p.kernel not in (2, 3):
            raise HebbnasError(f"pool kernel must be 2 or 3, got {p.kernel!r}")
    for a in t.aux_after:
        if a not in names:
            raise HebbnasError(f"aux head after unknown module {a!r}")
    s = t.stem
    for f in ("conv1", "conv2", "conv3"):
        if not isinstance(getattr(s, f), int) or getattr(s, f) <= 0:
            raise HebbnasError(f"stem.{f} must be a positive integer")
    if not isinstance(t.num_classes, int) or t.num_classes < 1:
        raise HebbnasError(f"num_classes must be a positive integer, got {t.num_classes!r}")
    if not isinstance(t.in_channels, int) or t.in_channels < 1:
        raise HebbnasError(f"in_channels must be a positive integer, got {t.in_channels!r}")
    if not 0.0 <= float(t.dropout) < 1.0:
        raise HebbnasError(f"dropout must be in [0, 1), got {t.dropout!r}")


def from_dict(d: Mapping[str, Any]) -> Topology:
    """Build a topology from its dict form; any structural problem is one HebbnasError."""
    if not isinstance(d, Mapping):
        raise HebbnasError("malformed topology: expected a JSON object")
    try:
        known = {f.name for f in dataclasses.fields(Topology)}
        extra = set(d) - known
        if extra:
            raise HebbnasError(f"malformed topology: unknown keys {sorted(extra)}")
        kw: dict[str, Any] = {k: d[k] for k in d if k in known}
        kw["modules"] = tuple(InceptionSpec(**m) for m in d["modules"])
        if "stem" in d:
            kw["stem"] = StemSpec(**d["stem"])
        if "pools" in d:
            kw["pools"] = tuple(PoolSpec(**p) for p in d["pools"])
        if "aux_after" in d:
            kw["aux_after"] = tuple(d["aux_after"])
        return Topology(**kw)
    except HebbnasError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise HebbnasError(f"malformed topology: {type(e).__name__}: {e}") from None


def load_topology(spec: str | Path) -> Topology:
    """A named base topology (``googlenet``) or a path to a topology JSON file."""
    s = str(spec)
    if s in BASE_TOPOLOGIES:
        return BASE_TOPOLOGIES[s]
    p = Path(s)
    if p.suffix == ".json" or p.exists():
        if not p.is_file():
            raise HebbnasError(f"topology file not found: {p}")
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise HebbnasError(f"cannot read topology file {p}: {e}") from None
        try:
            return Topology.from_json(text)
        except HebbnasError as e:
            raise HebbnasError(f"{p}: {e}") from None
    raise HebbnasError(f"unknown topology {s!r} (known: {', '.join(BASE_TOPOLOGIES)}, or a .json file)")


def get_topology(name: str) -> Topology:
    """A named base topology."""
    if name not in BASE_TOPOLOGIES:
        raise HebbnasError(f"unknown topology {name!r} (known: {', '.join(BASE_TOPOLOGIES)})")
    return BASE_TOPOLOGIES[name]


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """'3x224x224' -> (3, 224, 224)."""
    try:
        parts = tuple(int(p) for p in str(text).lower().split("x"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) <= 0:
        raise HebbnasError(f"input shape must look like 3x224x224, got {text!r}")
    return parts  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# closed-form costs


def _conv_out(h: int, k: int, s: int, p: int) -> int:
    return (h + 2 * p - k) // s + 1


def _pool_out(h: int, k: int, s: int, p: int = 0) -> int:
    """PyTorch's ceil-mode pooling size: the last window must start inside the (left-padded) input."""
    out = (h + 2 * p - k + s - 1) // s + 1  # floor division rounds down like PyTorch's div_rtn
    if (out - 1) * s >= h + p:
        out -= 1
    return out


def _conv(name: str, cin: int, cout: int, k: int, hw: tuple[int, int], s: int = 1, p: int = 0) -> LayerCost:
    """A conv without bias followed by BatchNorm (2 affine params per channel), as torchvision builds it."""
    h, w = _conv_out(hw[0], k, s, p), _conv_out(hw[1], k, s, p)
    if h < 1 or w < 1:
        raise HebbnasError(f"input too small: {name} would produce a {h}x{w} map")
    return LayerCost(name, (cout, h, w), cout * cin * k * k * h * w, cout * cin * k * k + 2 * cout)


def _pool(name: str, hw: tuple[int, int], k: int, s: int = 2) -> tuple[int, int]:
    h, w = _pool_out(hw[0], k, s), _pool_out(hw[1], k, s)
    if h < 1 or w < 1:
        raise HebbnasError(f"input too small: {name} ({k}x{k} max-pool) gets a {hw[0]}x{hw[1]} map")
    return h, w


def layer_costs(t: Topology, input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> list[LayerCost]:
    """Every conv/linear layer of the inference graph with its output shape, MACs and params."""
    c, h, w = (int(v) for v in input_shape)
    if c != t.in_channels:
        raise HebbnasError(f"input has {c} channels but topology {t.name!r} expects {t.in_channels}")
    s = t.stem
    out: list[LayerCost] = []
    lc = _conv("conv1", c, s.conv1, 7, (h, w), s=2, p=3)
    out.append(lc)
    hw = _pool("maxpool1", lc.out_shape[1:], 3)
    lc = _conv("conv2", s.conv1, s.conv2, 1, hw)
    out.append(lc)
    lc = _conv("conv3", s.conv2, s.conv3, 3, hw, p=1)
    out.append(lc)
    hw = _pool("maxpool2", lc.out_shape[1:], 3)
    cin = s.conv3
    pools = {p.after: p for p in t.pools}
    for i, m in enumerate(t.modules):
        out.extend(_inception_costs(m, cin, hw))
        cin = m.out_channels
        if m.name in pools:
            hw = _pool(f"maxpool{3 + [p.after for p in t.pools].index(m.name)}", hw, pools[m.name].kernel)
    out.append(LayerCost("fc", (t.num_classes, 1, 1), cin * t.num_classes, cin * t.num_classes + t.num_classes))
    return out


def _inception_costs(m: InceptionSpec, cin: int, hw: tuple[int, int]) -> list[LayerCost]:
    n = m.name
    out: list[LayerCost] = []
    if m.b1:
        out.append(_conv(f"{n}.branch1", cin, m.b1, 1, hw))
    for idx, red, width, k in ((2, m.b2_red, m.b2, 3), (3, m.b3_red, m.b3, m.b3_kernel)):
        if not width:
            continue
        c = cin
        if red:
            out.append(_conv(f"{n}.branch{idx}.0", cin, red, 1, hw))
            c = red
        out.append(_conv(f"{n}.branch{idx}.{1 if red else 0}", c, width, k, hw, p=k // 2))
    if m.b4:
        out.append(_conv(f"{n}.branch4.1", cin, m.b4, 1, hw))
    return out


def aux_head_params(cin: int, num_classes: int) -> int:
    """Paper's auxiliary classifier: avg-pool to 4x4, 1x1 conv 128 (+BN), fc 2048->1024, fc 1024->classes."""
    return (cin * 128 + 2 * 128) + (128 * 16 * 1024 + 1024) + (1024 * num_classes + num_classes)


def min_input_size(t: Topology) -> int:
    """Smallest square input the stem and pools accept."""
    for r in range(1, 512):
        try:
            layer_costs(t, (t.in_channels, r, r))
            return r
        except HebbnasError:
            continue
    raise HebbnasError("no input size up to 512 fits this topology")


def irreducible_topology(t: Topology) -> Topology:
    """The cheapest topology of the same shape: one channel per branch, no reductions.

    Its cost is the floor below which no width fitting can reach a budget (stem + head dominate).
    """
    mods = tuple(
        m.with_widths((1 if m.b1 else 0, 0, 1 if m.b2 else 0, 0, 1 if m.b3 else 0, 1 if m.b4 else 0))
        for m in t.modules
    )
    return dataclasses.replace(t, modules=mods, name=f"{t.name}-floor")


def round_width(w: float, multiple: int) -> int:
    """Round to a multiple (at least one multiple when w > 0); 0 stays 0."""
    if w <= 0:
        return 0
    return max(multiple, int(math.floor(w / multiple + 0.5)) * multiple)


# ---------------------------------------------------------------------------------------------
# named base topologies (Table 1 of Szegedy et al. 2014)

_TABLE1 = (
    ("inception3a", 64, 96, 128, 16, 32, 32),
    ("inception3b", 128, 128, 192, 32, 96, 64),
    ("inception4a", 192, 96, 208, 16, 48, 64),
    ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64),
    ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128),
    ("inception5a", 256, 160, 320, 32, 128, 128),
    ("inception5b", 384, 192, 384, 48, 128, 128),
)


def _googlenet(name: str, b3_kernel: int, last_pool: int, dropout: float) -> Topology:
    return Topology(
        name=name,
        modules=tuple(InceptionSpec(n, *w, b3_kernel=b3_kernel) for n, *w in _TABLE1),
        pools=(PoolSpec("inception3b", 3), PoolSpec("inception4e", last_pool)),
        dropout=dropout,
    )


BASE_TOPOLOGIES: dict[str, Topology] = {
    "googlenet": _googlenet("googlenet", 5, 3, 0.4),
    "googlenet-tv": _googlenet("googlenet-tv", 3, 2, 0.2),
}
PAPER_WIDTHS: dict[str, tuple[int, ...]] = {n: tuple(w) for n, *w in _TABLE1}


# ---------------------------------------------------------------------------------------------
# as text


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def show_table(t: Topology, input_shape: tuple[int, int, int]) -> str:
    """Per-module widths, output shape, MACs and params, plus totals."""
    layers = t.layers(input_shape)
    costs = t.module_costs(input_shape)
    shapes: dict[str, tuple[int, int, int]] = {}
    for lc in layers:
        shapes[lc.name.split(".")[0]] = lc.out_shape
    head = f"{'block':<13}" + "".join(f"{c:>10}" for c in PAPER_COLUMNS) + f"{'out':>14}{'MACs':>15}{'params':>12}"
    rows = [f"{t.name} at {'x'.join(map(str, input_shape))}", head, "-" * len(head)]
    stem_shape = shapes["conv3"]
    rows.append(f"{'stem':<13}" + " " * 60 + f"{'x'.join(map(str, stem_shape)):>14}"
                f"{_fmt_int(costs['stem'][0]):>15}{_fmt_int(costs['stem'][1]):>12}")
    for m in t.modules:
        shape = shapes[m.name]
        shape = (m.out_channels, *shape[1:])
        k = "" if m.b3_kernel == 5 else f" (k{m.b3_kernel})"
        rows.append(f"{m.name + k:<13}" + "".join(f"{w:>10}" for w in m.widths)
                    + f"{'x'.join(map(str, shape)):>14}{_fmt_int(costs[m.name][0]):>15}{_fmt_int(costs[m.name][1]):>12}")
    rows.append(f"{'head (fc)':<13}" + " " * 60 + f"{t.num_classes:>14}"
                f"{_fmt_int(costs['head'][0]):>15}{_fmt_int(costs['head'][1]):>12}")
    rows.append("-" * len(head))
    rows.append(f"{'total':<13}" + " " * 74 + f"{_fmt_int(t.macs(input_shape)):>15}{_fmt_int(t.params()):>12}")
    rows.append(f"MACs {t.macs(input_shape):.4g} at {'x'.join(map(str, input_shape))}, params {t.params():,} "
                f"(inference graph; aux heads add {t.params(aux=True) - t.params():,} params in training)")
    return "\n".join(rows)


def proxy_network(topology: Topology, width: float) -> Topology:
    """What actually trains for a candidate: the topology itself, or its uniformly narrowed copy (the width
    proxy). The budget always counts the full-width topology."""
    return topology if width >= 1 else topology.narrowed(width)
