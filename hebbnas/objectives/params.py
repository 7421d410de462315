"""params: the full-width candidate's parameter count (every trial reports it)."""

from __future__ import annotations

from hebbnas.objectives import Objective, register


@register
class Params(Objective):
    name = "params"
    order = 30
    key = "params"
