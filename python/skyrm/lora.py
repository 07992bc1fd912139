"""LoRA reward models (the peft package): adapters injected in place into a ``...ForSequenceClassification`` model,
which keeps its class, its module names and so skyrm's readout, sharding and checkpoints; every weight but the
adapters and the score head is frozen, and the score head is always fully trained (peft's ``modules_to_save``).

At export (:mod:`skyrm.export`) the trained weights go back into a peft model, which either writes the adapters in
peft's own format or merges them into a plain model.
"""

from __future__ import annotations

import warnings

from skyrm.config import TrainConfig
from skyrm.requires import require

__all__ = ["lora_config", "add_adapters", "peft_model"]

#: The adapter name peft gives by default, under which the weights are trained and exported.
ADAPTER = "default"


def lora_config(config: TrainConfig):
    """peft's ``LoraConfig`` for the run (``lora_r`` > 0)."""
    require("--lora-r", "peft")
    from peft import LoraConfig

    names = config.lora_target_modules.strip()
    targets = names if names == "all-linear" else [n.strip() for n in names.split(",") if n.strip()]
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, modules_to_save=["score"], task_type="SEQ_CLS")  # fmt: skip


def add_adapters(model, config: TrainConfig):
    """``model`` with LoRA adapters in place (on the meta device too: they are filled when the model is sharded)
    and only the adapters and the score head trainable. A target module the model lacks is one line."""
    settings = lora_config(config)  # first: a missing peft is said with its pip command
    from peft import inject_adapter_in_model

    try:
        return inject_adapter_in_model(settings, model, adapter_name=ADAPTER)
    except ValueError as e:
        text = str(e).strip().splitlines()[0]
        raise ValueError(f"--lora-target-modules {config.lora_target_modules}: {text}") from None


def peft_model(model, weights: dict, config: TrainConfig):
    """A peft model over ``model`` (a plain model on the meta device) holding ``weights``, the state dict of a
    model that :func:`add_adapters` made."""
    from peft import get_peft_model

    with warnings.catch_warnings():  # peft asks the model a question transformers has renamed (a FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        wrapped = get_peft_model(model, lora_config(config), adapter_name=ADAPTER)
    wrapped.load_state_dict({f"base_model.model.{k}": v for k, v in weights.items()}, assign=True)
    return wrapped
