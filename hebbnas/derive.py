"""From clusters to widths, and from widths to a topology that fits the MAC budget.

`fit` is shared by every strategy (hebbian, random, paper): one global width multiplier, found by
bisection, scales the stem and every Inception width; widths are rounded to a multiple (8 by
default), and a greedy pass then spends what rounding left of the budget, so the result uses the
budget instead of wasting up to a rounding step of it.
"""

from __future__ import annotations

import dataclasses
import math

from hebbnas.errors import HebbnasError
from hebbnas.topology import DEFAULT_INPUT, StemSpec, Topology, round_width

STEM_FIELDS = ("conv1", "conv2", "conv3")
_Key = tuple[str, str]  # ("stem", "conv3") or ("inception4c", "b2")


def _raw_widths(t: Topology, scale_stem: bool) -> dict[_Key, float]:
    raw: dict[_Key, float] = {}
    if scale_stem:
        raw.update({("stem", f): float(getattr(t.stem, f)) for f in STEM_FIELDS})
    for m in t.modules:
        for f, w in zip(("b1", "b2_red", "b2", "b3_red", "b3", "b4"), m.widths):
            if w:
                raw[(m.name, f)] = float(w)
    return raw


def _apply(t: Topology, widths: dict[_Key, int], name: str) -> Topology:
    stem = t.stem
    if any(k[0] == "stem" for k in widths):
        stem = StemSpec(**{f: widths.get(("stem", f), getattr(t.stem, f)) for f in STEM_FIELDS})
    mods = []
    for m in t.modules:
        new = [widths.get((m.name, f), 0) if w else 0 for f, w in zip(("b1", "b2_red", "b2", "b3_red", "b3", "b4"), m.widths)]
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
    """Greedily add one multiple at a time where the rounded width is furthest below its target."""
    widths = dict(widths)
    frozen: set[_Key] = set()
    while True:
        best, best_gap = None, 0.0
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
