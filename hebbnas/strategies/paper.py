"""paper: the paper's GoogLeNet (the space's base) scaled to the budget; only training knobs vary."""

from __future__ import annotations

from hebbnas.strategies import Strategy, register


@register
class Paper(Strategy):
    """The hand-set widths of Table 1, uniformly scaled by the fit: what the authors chose."""

    name = "paper"
    order = 20
