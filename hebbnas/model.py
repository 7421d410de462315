"""Build an `nn.Module` from a `Topology`; module names are the topology's names.

The layout follows torchvision's GoogLeNet (conv without bias + BatchNorm eps 1e-3 + ReLU), so
parameter counts match the closed form in `topology.py` exactly and state dicts are familiar.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hebbnas.topology import BN_EPS, InceptionSpec, Topology


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four parallel branches concatenated on channels; absent branches (width 0) are not built."""

    def __init__(self, cin: int, spec: InceptionSpec) -> None:
        super().__init__()
        self.spec = spec
        self.branch1 = BasicConv2d(cin, spec.b1, 1) if spec.b1 else None
        self.branch2 = _reduced_branch(cin, spec.b2_red, spec.b2, 3)
        self.branch3 = _reduced_branch(cin, spec.b3_red, spec.b3, spec.b3_kernel)
        self.branch4 = (
            nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(cin, spec.b4, 1))
            if spec.b4
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in (self.branch1, self.branch2, self.branch3, self.branch4) if b is not None]
        return torch.cat(outs, 1)


def _reduced_branch(cin: int, red: int, width: int, k: int) -> nn.Sequential | None:
    if not width:
        return None
    layers: list[nn.Module] = [BasicConv2d(cin, red, 1)] if red else []
    layers.append(BasicConv2d(red or cin, width, k, padding=k // 2))
    return nn.Sequential(*layers)


class InceptionAux(nn.Module):
    """The paper's auxiliary classifier (training only): 4x4 avg-pool, 1x1 conv 128, fc 1024, dropout 0.7."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv = BasicConv2d(cin, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 5x5/3 average pooling at 14x14 is exactly a 4x4 adaptive pool; adaptive also works at proxy sizes
        x = F.adaptive_avg_pool2d(x, (4, 4))
        x = torch.flatten(self.conv(x), 1)
        x = self.dropout(F.relu(self.fc1(x), inplace=True))
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """A GoogLeNet variant. `forward` is the inference graph; `forward_with_aux` adds the aux heads."""

    def __init__(self, topology: Topology, aux: bool = True) -> None:
        super().__init__()
        self.topology = topology
        t, s = topology, topology.stem
        self.conv1 = BasicConv2d(t.in_channels, s.conv1, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(s.conv1, s.conv2, 1)
        self.conv3 = BasicConv2d(s.conv2, s.conv3, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        order: list[str] = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2"]
        pools = {p.after: p.kernel for p in t.pools}
        cin = s.conv3
        n_pool = 3
        for m in t.modules:
            self.add_module(m.name, Inception(cin, m))
            order.append(m.name)
            cin = m.out_channels
            if m.name in pools:
                self.add_module(f"maxpool{n_pool}", nn.MaxPool2d(pools[m.name], stride=2, ceil_mode=True))
                order.append(f"maxpool{n_pool}")
                n_pool += 1
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(t.dropout)
        self.fc = nn.Linear(cin, t.num_classes)
        self.aux_after = tuple(t.aux_after) if aux else ()
        for i, name in enumerate(self.aux_after, start=1):
            self.add_module(f"aux{i}", InceptionAux(t.module(name).out_channels, t.num_classes))
        self.body = tuple(order)
        _init_weights(self)

    def _features(self, x: torch.Tensor, taps: dict[str, torch.Tensor] | None) -> torch.Tensor:
        for name in self.body:
            x = getattr(self, name)(x)
            if taps is not None and name in self.aux_after:
                taps[name] = x
        return x

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, C_last)
        return self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self._features(x, None))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and, in training mode, the aux heads' logits (empty list in eval or without aux)."""
        taps: dict[str, torch.Tensor] = {}
        logits = self._head(self._features(x, taps if self.training and self.aux_after else None))
        aux = [getattr(self, f"aux{i}")(taps[n]) for i, n in enumerate(self.aux_after, start=1) if n in taps]
        return logits, aux


def _init_weights(model: nn.Module) -> None:
    """torchvision's GoogLeNet init: truncated normal (std 0.01) for conv/linear, BN at identity."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build(topology: Topology, aux: bool | None = None) -> GoogLeNet:
    """An untrained model of this topology. Aux heads default to on when the topology names any."""
    return GoogLeNet(topology, aux=bool(topology.aux_after) if aux is None else aux)


def inference_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without aux heads: what checkpoints for deployment and exports keep."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("aux")}


def count_params(model: nn.Module, aux: bool = False) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if aux or not n.startswith("aux"))
