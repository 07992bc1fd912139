"""The trained model in Hugging Face format, written by rank 0 from the gathered weights, and its upload to the hub.

* **Weights**: safetensors in ``--export-dtype`` (default ``--dtype``'s, on any device: a bf16 run tried out on a
  CPU exports what it would on GPUs), sharded at ``--max-shard-size`` with an index.
* **Config**: ``num_labels=1``, the pad, the held-out ``reward_mean`` / ``reward_std`` of the exported head, and
  the attention implementation the model needs (eager for Gemma-2), which a plain ``from_pretrained`` then uses.
* **LoRA runs** (:mod:`skyrm.lora`): the adapters and the trained score head in peft's format (a few MB; load them
  over the base model as skyrm builds it), or with ``--merge-lora`` a plain model with the adapters merged.
* **Normalised rewards** (``--normalize-rewards``): the score head's weight is divided by the std of the training
  rewards, so a plain load gives rewards of unit std on the training pairs. The mean cannot be folded in where the
  head has no bias (Llama, Gemma, Qwen, Mistral: ``nn.Linear(hidden, 1, bias=False)``, and a ``score.bias`` in the
  weights would be dropped by ``from_pretrained`` without an error): the config's ``reward_normalization`` records
  the ``offset`` (mean / std) to subtract for zero mean. Differences of rewards, and so pairwise preferences and
  any baseline-subtracted use (GRPO, RLOO, whitened PPO advantages), are exactly those of (r - mean) / std.
* **Hub**: ``--push-to-hub OWNER/NAME`` uploads the exported folder (:func:`push`); :func:`check_push` refuses it
  before training where the upload cannot work (offline, no token).
"""

from __future__ import annotations

from pathlib import Path

import torch

from skyrm.config import TrainConfig
from skyrm.distributed import Runtime, full_state_dict
from skyrm.faults import check_finite
from skyrm.lora import ADAPTER, peft_model
from skyrm.model import attention_implementation, score_head

__all__ = ["export_model", "export_dtype", "check_push", "push"]

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def export_dtype(config: TrainConfig) -> torch.dtype:
    return TORCH_DTYPES[config.export_dtype or config.dtype]


def export_model(
    model, tokenizer, folder: Path, runtime: Runtime, config: TrainConfig, extra: dict, train_rewards: dict | None
) -> None:
    """Writes the trained ``model`` to ``folder`` with the ``tokenizer`` (chat template included) and ``extra``
    (the held-out statistics) in its config; ``train_rewards`` (``mean``, ``std``, ``pairs``) when the rewards are
    normalised. Every rank calls it (the weights are gathered); rank 0 writes."""
    weights = full_state_dict(model)
    if not runtime.main:
        return
    check_finite(weights)
    from transformers import AutoModelForSequenceClassification as Auto

    with torch.device("meta"):
        plain = Auto.from_config(model.config, dtype=torch.float32, trust_remote_code=config.trust_remote_code)
    if config.lora_r:
        trained = peft_model(plain, weights, config)
        if config.merge_lora:
            trained = trained.merge_and_unload()
    else:
        plain.load_state_dict(weights, assign=True)
        trained = plain
    if train_rewards is not None:
        extra = _normalize(_head(trained), train_rewards, extra)
    trained.to(export_dtype(config))
    if config.lora_r and not config.merge_lora:  # peft's folder: adapter_config.json names the base model
        trained.peft_config[ADAPTER].base_model_name_or_path = config.model
        trained.save_pretrained(folder, save_embedding_layers=False)  # frozen: the base model's (pad row included)
    else:
        for key, value in extra.items():
            setattr(trained.config, key, value)
        needed = attention_implementation(trained.config.model_type, None)
        if needed:  # written to config.json, where from_pretrained reads it
            trained.config.attn_implementation = needed
        trained.save_pretrained(folder, max_shard_size=config.max_shard_size)
    tokenizer.save_pretrained(folder)


def _head(model) -> torch.nn.Linear:
    """The trained score head: the head itself, or the copy that peft trains (``modules_to_save``)."""
    head = score_head(model)
    return head.modules_to_save[ADAPTER] if hasattr(head, "modules_to_save") else head


def _normalize(head: torch.nn.Linear, train_rewards: dict, extra: dict) -> dict:
    """Folds (r - mean) / std into ``head`` as far as its parameters allow (see the module's docstring) and returns
    ``extra`` for the exported head: its held-out statistics, and ``reward_normalization``."""
    mean, std = train_rewards["mean"], train_rewards["std"]
    if not std > 0:
        raise ValueError(f"--normalize-rewards: the training rewards have std {std}: nothing to normalise by")
    with torch.no_grad():
        head.weight.div_(std)
        if head.bias is not None:
            head.bias.sub_(mean).div_(std)
    offset = 0.0 if head.bias is not None else mean / std
    out = {**extra, "reward_normalization": {"mean": mean, "std": std, "offset": offset, "on": "training pairs",
                                             "pairs": train_rewards["pairs"]}}  # fmt: skip
    if "reward_mean" in extra:
        out["reward_mean"] = (extra["reward_mean"] - mean) / std + offset
        out["reward_std"] = extra["reward_std"] / std
    return out


def check_push(config: TrainConfig) -> None:
    """Before training: refuses ``--push-to-hub`` in one line where the upload cannot work (the hub unreachable or
    HF_HUB_OFFLINE set, the huggingface_hub package missing, no token)."""
    if config.push_to_hub is None:
        return
    from skyshared.hub import hub_offline

    from skyrm.requires import require

    require("--push-to-hub", "huggingface_hub")
    from huggingface_hub import get_token

    flag = f"--push-to-hub {config.push_to_hub}"
    if hub_offline():
        raise ValueError(f"{flag}: the Hugging Face hub cannot be reached (offline, or HF_HUB_OFFLINE is set); "
                         "train without it and upload OUTPUT_DIR/model later with `hf upload`")  # fmt: skip
    if get_token() is None:
        raise ValueError(f"{flag}: no Hugging Face token: run `hf auth login` or set HF_TOKEN")


def push(folder: Path, repo: str) -> str:
    """Uploads ``folder`` to the hub model repository ``repo`` (created private if missing); the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(repo, repo_type="model", private=True, exist_ok=True)
        done = api.upload_folder(repo_id=repo, folder_path=str(folder), repo_type="model",
                                 commit_message="skyrm: the trained reward model")  # fmt: skip
    except (HfHubHTTPError, OSError) as e:
        from skyrm.requires import first_line

        raise ValueError(f"--push-to-hub {repo}: the upload failed ({first_line(e)}); the model is in {folder}: "
                         f"upload it with `hf upload {repo} {folder}`") from None  # fmt: skip
    return done.commit_url
