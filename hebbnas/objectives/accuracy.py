"""accuracy: validation accuracy after a trial's last epoch, what every search ranks by (reported by training)."""

from __future__ import annotations

from hebbnas.objectives import Objective, register
from hebbnas.trials import METRIC


@register
class Accuracy(Objective):
    name = "accuracy"
    order = 0
    key = METRIC
    direction = "max"
