"""The final stage's decision: which network a search hands back, from paired seeds against the control.

The control (the paper's widths fitted to the same budget) is the default answer. A finalist replaces it
only when it beats it on *validation* by more than the noise: the paired differences over the seeds both
trained (finalist minus control, one per seed) have a t interval whose lower end lies above the stated
margin (0 by default). With one seed there is no interval, and only a stated margin can decide (the
difference must exceed it). Test accuracy is carried along for the report and never read here.

Pure values in, values out; the stage (`hebbnas.search.final`) collects the accuracies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CONFIDENCE = 0.95


@dataclass(frozen=True)
class NetworkResult:
    """One network of the final stage: its accuracies per seed (None where that unit failed)."""

    name: str  # "control" or the search trial id it retrains
    control: bool
    val: Mapping[int, float | None]
    test: Mapping[int, float | None] = field(default_factory=dict)
    rank: int = 0  # its place in the search (1 = best by validation); the control has 0

    def seeds_ok(self) -> list[int]:
        return sorted(s for s, v in self.val.items() if v is not None and math.isfinite(v))

    @property
    def failed(self) -> bool:
        """Some seed did not give a validation accuracy (an error): the network cannot be compared fairly."""
        return len(self.seeds_ok()) < len(self.val)

    def mean_val(self) -> float:
        ok = self.seeds_ok()
        return sum(float(self.val[s]) for s in ok) / len(ok) if ok else math.nan  # type: ignore[arg-type]

    def mean_test(self) -> float:
        vals = [float(v) for s, v in self.test.items() if v is not None and s in self.seeds_ok()]
        return sum(vals) / len(vals) if vals else math.nan


@dataclass(frozen=True)
class Comparison:
    """A finalist against the control: mean paired difference (points) and its t interval over `n` seeds."""

    name: str
    n: int
    diff: float  # validation, points (100 x accuracy)
    lo: float
    hi: float
    test_diff: float  # the same on test: reported, never used to choose
    beats: bool


@dataclass(frozen=True)
class Decision:
    """What the final stage hands back: the chosen network, why, and every comparison."""

    chosen: str
    kept_control: bool
    sentence: str
    comparisons: tuple[Comparison, ...]
    margin: float
    confidence: float


def paired_interval(diffs: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean of paired differences and its two-sided t interval (scipy.stats.t); (mean, nan, nan) with one pair."""
    from scipy import stats

    d = [float(x) for x in diffs]
    n = len(d)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(d) / n
    if n == 1:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def compare(finalist: NetworkResult, control: NetworkResult, margin: float = 0.0,
            confidence: float = CONFIDENCE) -> Comparison:
    """`finalist` minus `control` on the seeds both trained, in points; `beats` by the module's rule."""
    shared = [s for s in finalist.seeds_ok() if s in control.seeds_ok()]
    d = [100 * (float(finalist.val[s]) - float(control.val[s])) for s in shared]  # type: ignore[arg-type]
    mean, lo, hi = paired_interval(d, confidence)
    t = [100 * (float(finalist.test[s]) - float(control.test[s])) for s in shared  # type: ignore[arg-type]
         if finalist.test.get(s) is not None and control.test.get(s) is not None]
    test_diff = sum(t) / len(t) if t else math.nan
    if finalist.failed or not shared:
        beats = False
    elif len(shared) == 1:
        beats = margin > 0 and mean > margin
    else:
        beats = lo > margin
    return Comparison(finalist.name, len(shared), mean, lo, hi, test_diff, beats)


def decide(networks: Sequence[NetworkResult], margin: float = 0.0, confidence: float = CONFIDENCE) -> Decision:
    """The control, unless a finalist beats it (see the module docstring); among several that do, the one
    with the largest mean paired difference, then the better search rank. A control that failed on every
    seed leaves the finalists to their mean validation accuracy (said in the sentence)."""
    control = next((n for n in networks if n.control), None)
    finalists = [n for n in networks if not n.control]
    if control is None or not control.seeds_ok():
        ok = [n for n in finalists if n.seeds_ok() and not n.failed]
        if not ok:
            raise ValueError("no network of the final stage trained on every seed")
        best = max(ok, key=lambda n: (n.mean_val(), -n.rank))
        return Decision(best.name, False, f"the control did not train, so {best.name} is chosen by its mean "
                        f"validation accuracy ({best.mean_val():.4f})", (), margin, confidence)
    comps = tuple(compare(f, control, margin, confidence) for f in finalists)
    winners = [c for c, f in zip(comps, finalists) if c.beats]
    if not winners:
        return Decision(control.name, True, "the paper's widths are kept: no finalist beat them on validation by "
                        f"more than the noise{_margin_words(margin)}", comps, margin, confidence)
    rank = {f.name: f.rank for f in finalists}
    best = max(winners, key=lambda c: (c.diff, -rank[c.name]))
    how = (f"[{best.lo:+.2f}, {best.hi:+.2f}] points on validation ({best.n} paired seeds, {confidence:.0%} t "
           f"interval{_margin_words(margin)})" if best.n > 1 else
           f"points on validation (one seed, above the margin of {margin:g} points)")
    return Decision(best.name, False, f"{best.name} beats the paper's widths by {best.diff:+.2f} {how}", comps,
                    margin, confidence)


def _margin_words(margin: float) -> str:
    return f"; margin {margin:g} points" if margin > 0 else ""
