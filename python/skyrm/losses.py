"""Pairwise reward-model losses: Bradley-Terry and the ablation losses of the Skywork-Reward paper (Table 5).

Every loss takes the rewards of the chosen and rejected answers of a batch of pairs and returns one loss per pair;
the trainer sums them and divides by the global number of pairs, so results do not depend on micro-batching or
on the number of processes. With ``d = r_chosen - r_rejected`` and ``s`` the logistic sigmoid:

==================  ==========================================  =============================
name                per-pair loss                               parameters (default)
==================  ==========================================  =============================
``bt``              ``-log s(d - margin)``                      ``margin`` (0)
``bt-temperature``  ``-log s(d / temperature)``                 ``temperature`` (2)
``focal``           ``-s(-d)^gamma log s(d)``                   ``gamma`` (2)
``focal-penalty``   ``-min(1, 2 s(-d))^gamma log s(d)``         ``gamma`` (2)
``hinge``           ``max(0, margin - d)``                      ``margin`` (1)
``tempered-log``    ``-(s(d)^(1 - t) - 1) / (1 - t)``           ``t`` (0.5)
``margin-mse``      ``(r_chosen - (r_rejected + margin))^2``    ``margin`` (1)
``pointwise-ce``    ``-[log s(r_chosen) + log(1 - s(r_rejected))]``  none
==================  ==========================================  =============================

The paper did not publish its hyper-parameters; the defaults above are common choices. Any loss may add a
reward-centering term ``center * (r_chosen + r_rejected)^2`` (Eisenstein et al.), which keeps rewards near zero.
Only ``bt``, ``hinge`` and ``margin-mse`` use a margin: a margin given to another loss is refused. A margin per pair
(the data's ``margin`` column, as in TRL) takes the place of the configured one.

Precision at large margins: the focal weights use ``s(-d)`` (``1 - s(d)`` rounds to 0 in float32 once ``d`` passes
about 17, and the loss and its gradient with it), logarithms of sigmoids are ``logsigmoid`` and the tempered loss
uses ``expm1``, so that large margins neither overflow nor lose their last digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["LOSSES", "LossConfig", "pair_losses", "pair_metrics"]

LOSSES = ("bt", "bt-temperature", "focal", "focal-penalty", "hinge", "tempered-log", "margin-mse", "pointwise-ce")
#: The losses that use a margin, and their default margin.
MARGIN_LOSSES = {"bt": 0.0, "hinge": 1.0, "margin-mse": 1.0}


@dataclass(frozen=True)
class LossConfig:
    """A loss and its parameters; ``margin`` None takes the loss's own default."""

    name: str = "bt"
    margin: float | None = None
    temperature: float = 2.0
    gamma: float = 2.0
    t: float = 0.5
    center: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"unknown loss {self.name!r}; losses are {', '.join(LOSSES)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be non-negative, got {self.gamma}")
        if self.t == 1.0:
            raise ValueError("t must not be 1 (that is the plain log loss: use bt)")
        if self.center < 0:
            raise ValueError(f"center must be non-negative, got {self.center}")
        if self.margin is not None and not self.uses_margin:
            raise ValueError(f"{self.name} ignores the margin; margins apply to {', '.join(MARGIN_LOSSES)}")

    @property
    def uses_margin(self) -> bool:
        return self.name in MARGIN_LOSSES

    @property
    def margin_value(self) -> float:
        return MARGIN_LOSSES.get(self.name, 0.0) if self.margin is None else self.margin


def pair_losses(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    config: LossConfig = LossConfig(),
    margins: torch.Tensor | None = None,
) -> torch.Tensor:
    """One loss per pair (same shape as ``chosen``), computed in float32 at least. ``margins``: one per pair, in
    place of the configured margin (margin-aware losses only)."""
    chosen, rejected = chosen.float(), rejected.float()
    d = chosen - rejected
    name = config.name
    if margins is not None and not config.uses_margin:
        raise ValueError(f"{name} ignores the margin; margins apply to {', '.join(MARGIN_LOSSES)}")
    margin = config.margin_value if margins is None else margins.to(d.device, d.dtype)
    if name == "bt":
        loss = -F.logsigmoid(d - margin)
    elif name == "bt-temperature":
        loss = -F.logsigmoid(d / config.temperature)
    elif name == "focal":  # 1 - s(d) = s(-d), without the cancellation
        loss = -(torch.sigmoid(-d) ** config.gamma) * F.logsigmoid(d)
    elif name == "focal-penalty":  # 1 - 2 max(s(d) - 0.5, 0) = min(1, 2 s(-d))
        weight = torch.clamp(2 * torch.sigmoid(-d), max=1)
        loss = -(weight**config.gamma) * F.logsigmoid(d)
    elif name == "hinge":
        loss = torch.clamp(margin - d, min=0)
    elif name == "tempered-log":
        loss = -torch.expm1((1 - config.t) * F.logsigmoid(d)) / (1 - config.t)
    elif name == "margin-mse":
        loss = (chosen - (rejected + margin)) ** 2
    else:  # pointwise-ce
        loss = -(F.logsigmoid(chosen) + F.logsigmoid(-rejected))
    if config.center:
        loss = loss + config.center * (chosen + rejected) ** 2
    return loss


def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sums over the pairs (divide by the pair count): ``correct`` (chosen strictly above rejected; a tie is wrong,
    as RewardBench counts it) and ``margin`` (chosen minus rejected)."""
    d = chosen.float() - rejected.float()
    return {"correct": (d > 0).float().sum(), "margin": d.sum()}
