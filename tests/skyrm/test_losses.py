"""Each loss against values computed by hand (the math module, one pair at a time), and the metrics."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from skyrm.losses import LOSSES, LossConfig, pair_losses, pair_metrics  # noqa: E402

CHOSEN = [2.0, 0.5, -1.0, 3.0, 0.0]
REJECTED = [1.0, 1.5, -1.0, -4.0, 0.0]


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def by_hand(config: LossConfig, c: float, r: float) -> float:
    d, m = c - r, config.margin_value
    value = {
        "bt": -math.log(sig(d - m)),
        "bt-temperature": -math.log(sig(d / config.temperature)),
        "focal": -((1 - sig(d)) ** config.gamma) * math.log(sig(d)),
        "focal-penalty": -((1 - 2 * max(sig(d) - 0.5, 0)) ** config.gamma) * math.log(sig(d)),
        "hinge": max(0.0, m - d),
        "tempered-log": -(sig(d) ** (1 - config.t) - 1) / (1 - config.t),
        "margin-mse": (c - (r + m)) ** 2,
        "pointwise-ce": -(math.log(sig(c)) + math.log(1 - sig(r))),
    }[config.name]
    return value + config.center * (c + r) ** 2


CONFIGS = [LossConfig(name) for name in LOSSES] + [
    LossConfig("bt", margin=0.5),
    LossConfig("bt", center=0.01),
    LossConfig("bt-temperature", temperature=0.5),
    LossConfig("focal", gamma=0.0),
    LossConfig("focal-penalty", gamma=3.0),
    LossConfig("hinge", margin=2.0),
    LossConfig("tempered-log", t=0.2),
    LossConfig("margin-mse", margin=0.0),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.name}-{c.margin}-{c.center}-{c.temperature}")
def test_losses_equal_hand_computed_values(config):
    got = pair_losses(torch.tensor(CHOSEN), torch.tensor(REJECTED), config)
    expected = [by_hand(config, c, r) for c, r in zip(CHOSEN, REJECTED, strict=True)]
    assert got.dtype == torch.float32 and got.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_plain_bt_is_the_focal_loss_without_focus_and_large_margins_do_not_overflow():
    c, r = torch.tensor([1.0, -2.0]), torch.tensor([0.0, 3.0])
    assert torch.allclose(pair_losses(c, r), pair_losses(c, r, LossConfig("focal", gamma=0.0)))
    huge = pair_losses(torch.tensor([0.0]), torch.tensor([500.0]))
    assert torch.isfinite(huge).all() and huge.item() == pytest.approx(500.0)


def test_bf16_rewards_are_computed_in_float32():
    loss = pair_losses(torch.tensor([1.0], dtype=torch.bfloat16), torch.tensor([0.0], dtype=torch.bfloat16))
    assert loss.dtype == torch.float32


def test_metrics_count_ties_as_wrong():
    metrics = pair_metrics(torch.tensor(CHOSEN), torch.tensor(REJECTED))
    assert metrics["correct"].item() == 2  # 2 > 1 and 3 > -4; 0.5 < 1.5; the two ties are wrong
    assert metrics["margin"].item() == pytest.approx(sum(CHOSEN) - sum(REJECTED))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "nope"}, "unknown loss"),
        ({"temperature": 0}, "temperature"),
        ({"gamma": -1}, "gamma"),
        ({"t": 1.0}, "use bt"),
        ({"center": -1}, "center"),
    ],  # fmt: skip
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LossConfig(**kwargs)
