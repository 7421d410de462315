"""macs: multiply-accumulates of the full-width candidate at the deploy shape (every trial reports them)."""

from __future__ import annotations

from hebbnas.objectives import Objective, register


@register
class MACs(Objective):
    name = "macs"
    order = 20
    key = "macs"
