"""The report's values: per module and per cluster, as DataFrames and numbers (no text, no files).

The derived widths after fitting beside the paper's (Table 1), MACs and params of both, and what each 1x1
reduction saves.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hebbnas.errors import HebbnasError
from hebbnas.topology import DEFAULT_INPUT, PAPER_COLUMNS, PAPER_WIDTHS, StemSpec, Topology

if TYPE_CHECKING:
    import pandas as pd

    from hebbnas.derive import Derivation, ModuleDerivation

DEFAULT_TITLE = "Cluster-to-branch report"


def compact_members(members: Sequence[int]) -> str:
    """Channel indices as a short string: runs of three or more become ranges, e.g. ``3,17,40-45``."""
    idx = sorted(int(i) for i in members)
    parts: list[str] = []
    i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{idx[i]}-{idx[j]}")
        else:
            parts.extend(str(v) for v in idx[i : j + 1])
        i = j + 1
    return ",".join(parts)


def shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def paper_topology(base: Topology, num_classes: int | None = None) -> Topology:
    """The reference the derived widths are compared with: Table 1 widths and stem in the base's layout.

    The base (the probed network) may itself be scaled or derived, so its widths are not the paper's:
    modules named as in Table 1 get the paper's widths and the stem is the paper's; a module Table 1
    does not name keeps the base's widths. Pools and the branch3 kernel are the base's, so a
    torchvision-layout base is compared with its own layout. `num_classes` makes the head match the
    fitted topology, so totals compare like with like.
    """
    paper = base.with_widths({n: PAPER_WIDTHS[n] for n in base.module_names if n in PAPER_WIDTHS},
                             name="paper")
    paper = dataclasses.replace(paper, stem=StemSpec())
    return paper.with_classes(num_classes) if num_classes is not None else paper


def _check_modules(derivation: Derivation, fitted: Topology) -> None:
    for t in (fitted, derivation.base):
        missing = [m.name for m in derivation.modules if m.name not in t.module_names]
        if missing:
            raise HebbnasError(f"topology {t.name!r} lacks derived modules {missing}")


def _module_maps(t: Topology, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, int]]:
    """(H, W) of each Inception module's input at `input_shape` (all its layers share it)."""
    out: dict[str, tuple[int, int]] = {}
    for lc in t.layers(input_shape):
        block = lc.name.split(".")[0]
        if block.startswith("inception"):
            out.setdefault(block, (lc.out_shape[1], lc.out_shape[2]))
    return out


def reduction_savings(t: Topology, input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> dict[str, dict[str, float]]:
    """MACs of the 3x3 and 5x5 branches with their 1x1 reduction and without it (input fed directly).

    Returns per module ``{"3x3": with, "3x3 no red": without, "3x3 saves": without/with, ...}``;
    NaN where the branch is removed, a factor of 1 where it has no reduction.
    """
    cin = t.in_channels_of()
    maps = _module_maps(t, input_shape)
    macs: dict[str, int] = {}
    for lc in t.layers(input_shape):
        key = ".".join(lc.name.split(".")[:2])
        macs[key] = macs.get(key, 0) + lc.macs
    out: dict[str, dict[str, float]] = {}
    for m in t.modules:
        h, w = maps[m.name]
        row: dict[str, float] = {}
        for label, idx, width, k in (("3x3", 2, m.b2, 3), ("5x5", 3, m.b3, m.b3_kernel)):
            if not width:
                row.update({label: math.nan, f"{label} no red": math.nan, f"{label} saves": math.nan})
                continue
            with_red = float(macs.get(f"{m.name}.branch{idx}", 0))
            without = float(k * k * cin[m.name] * width * h * w)
            row.update({label: with_red, f"{label} no red": without, f"{label} saves": without / with_red})
        out[m.name] = row
    return out


def module_table(derivation: Derivation, fitted: Topology,
                 input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> pd.DataFrame:
    """One row per derived module: what the probe saw, the fitted and paper widths, costs, savings.

    ``n_scale1/3/5`` count live clusters (dead channels are singleton clusters that derive skips).
    Width columns use the paper's names (``#1x1`` ... ``pool proj``) for the fitted topology and
    ``paper #1x1`` ... for Table 1; ``raw #1x1`` ... are the unfitted widths in cluster units. MACs are
    at `input_shape` (the deploy shape); ``3x3red saves`` is the MAC factor the 3x3 branch's reduction
    saves (same for 5x5). Under the pca and redundancy policies ``signal <name>`` columns hold what the
    policy read per module (`ModuleDerivation.signal`), beside the widths it led to.
    """
    import pandas as pd

    _check_modules(derivation, fitted)
    paper = paper_topology(derivation.base, fitted.num_classes)
    fit_costs = fitted.module_costs(input_shape)
    paper_costs = paper.module_costs(input_shape)
    deploy_maps = _module_maps(fitted, input_shape)
    savings = reduction_savings(fitted, input_shape)
    rows: list[dict[str, Any]] = []
    for md in derivation.modules:
        fm = fitted.module(md.name)
        live = [c for c in md.clusters if not is_dead(md, c.members)]  # what derive counts
        row: dict[str, Any] = {
            "module": md.name,
            "in_channels": md.in_channels,
            "map_size": shape_str(md.map_size),
            "deploy_map": shape_str(deploy_maps[md.name]),
            "clusters": md.num_clusters,
            "live_clusters": len(live),
            "dead": len(md.dead),
            **{f"n_scale{k}": sum(c.scale == k for c in live) for k in (1, 3, 5)},
            "scale_measured": bool(md.scale_measured),
        }
        row.update({col: int(w) for col, w in zip(PAPER_COLUMNS, fm.widths)})
        row["b3_kernel"] = fm.b3_kernel
        pm = paper.module(md.name)
        row.update({f"paper {col}": int(w) for col, w in zip(PAPER_COLUMNS, pm.widths)})
        row.update({f"raw {col}": float(w) for col, w in zip(PAPER_COLUMNS, md.raw_widths)})
        row["macs"], row["params"] = fit_costs[md.name]
        row["paper macs"], row["paper params"] = paper_costs[md.name]
        s = savings[md.name]
        row.update({"3x3 macs": s["3x3"], "3x3 macs no red": s["3x3 no red"], "3x3red saves": s["3x3 saves"],
                    "5x5 macs": s["5x5"], "5x5 macs no red": s["5x5 no red"], "5x5red saves": s["5x5 saves"]})
        row.update({f"signal {k}": float(v) for k, v in md.signal})  # pca / redundancy: what the policy read
        row["note"] = md.note
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("3x3 macs", "3x3 macs no red", "5x5 macs", "5x5 macs no red"):
        df[col] = df[col].round().astype("Int64")  # integer counts; missing where the branch is removed
    return df


def cluster_table(derivation: Derivation) -> pd.DataFrame:
    """One row per (module, cluster), in label order; ``members`` is a compact index string and
    ``dead`` marks a cluster made only of dead (zero-variance) channels."""
    import pandas as pd

    rows = [
        {"module": md.name, "cluster": c.label, "size": c.size, "members": compact_members(c.members),
         "cohesion": float(c.cohesion), "decay1": float(c.decay[0]), "decay2": float(c.decay[1]),
         "scale": int(c.scale), "branch": c.branch, "dead": is_dead(md, c.members)}
        for md in derivation.modules for c in md.clusters
    ]
    cols = ["module", "cluster", "size", "members", "cohesion", "decay1", "decay2", "scale", "branch", "dead"]
    return pd.DataFrame(rows, columns=cols)


def is_dead(md: ModuleDerivation, members: Sequence[int]) -> bool:
    dead = set(md.dead)
    return bool(members) and all(int(i) in dead for i in members)


def totals(derivation: Derivation, fitted: Topology, input_shape: tuple[int, int, int] = DEFAULT_INPUT,
           budget: float | None = None) -> dict[str, Any]:
    """MACs and params of the fitted topology, the paper's, and the paper's fitted to the same budget.

    The paper-scaled numbers (`fit` with its defaults) are the fair baseline under a budget; they are
    None without a budget or when the paper's layout cannot meet it.
    """
    from hebbnas.derive import fit

    paper = paper_topology(derivation.base, fitted.num_classes)
    out: dict[str, Any] = {
        "input_shape": list(input_shape),
        "budget": None if budget is None else float(budget),
        "fitted": {"name": fitted.name, "macs": fitted.macs(input_shape), "params": fitted.params()},
        "paper": {"name": paper.name, "macs": paper.macs(input_shape), "params": paper.params()},
        "paper_scaled": None,
    }
    if budget is not None:
        try:
            ps = fit(paper, float(budget), input_shape, name=f"{paper.name}-scaled")
            out["paper_scaled"] = {"name": ps.name, "macs": ps.macs(input_shape), "params": ps.params()}
        except HebbnasError:
            pass
    return out
