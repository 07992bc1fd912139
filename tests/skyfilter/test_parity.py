"""Parity with the reference decontamination method on real data: scikit-learn's CountVectorizer(7, 13)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import skyfilter
from skyfilter import benchmark_from_table, read_table

sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")


def sklearn_flags(train: list[str], bench: list[str]) -> np.ndarray:
    """The method the Skywork-Reward authors cite: any shared word n-gram, n from 7 to 13."""
    vectorizer = sklearn_text.CountVectorizer(ngram_range=(7, 13)).fit(bench)
    return np.asarray(vectorizer.transform(train).sum(axis=1)).ravel() > 0


def test_skywork_preset_flags_exactly_what_sklearn_flags(shared_data):
    prefs, bench_dir = shared_data / "prefs", shared_data / "bench"
    annotations = read_table(
        prefs / "rewardbench_bon_alpacaeval_annotations" / "tulu2dpo13b_vs_gpt35turbo_gpt4turbo_annotations.jsonl.gz"
    )
    ultrafeedback = [
        read_table(prefs / "ultrafeedback_binarized_1200" / f) for f in ("train_clean.jsonl", "eval_clean.jsonl")
    ]
    train = annotations.column("instruction").to_pylist() + [
        p for t in ultrafeedback for p in t.column("prompt").to_pylist()
    ]
    alpacaeval = read_table(prefs / "alpacaeval2_gpt4turbo_annotations" / "baseline_outputs.jsonl")
    rewardbench = read_table(bench_dir / "rewardbench_partial" / "llmbar_reconstructed_rb1_layout.jsonl")
    bench_prompts = alpacaeval.column("instruction").to_pylist() + rewardbench.column("prompt").to_pylist()

    expected = sklearn_flags(train, bench_prompts)
    benchmarks = [
        benchmark_from_table(alpacaeval, "alpacaeval", prompt_column="instruction"),
        benchmark_from_table(rewardbench, "rewardbench_partial"),
    ]
    result = skyfilter.contaminate(pa.table({"prompt": train}), benchmarks, preset="skywork")
    got = result.column("flagged").to_numpy(zero_copy_only=False)
    assert len(train) > 10_000 and 500 < expected.sum() < len(train)  # a real mix of flagged and clean rows
    mismatched = np.flatnonzero(got != expected)
    assert not len(mismatched), [train[i][:80] for i in mismatched[:5]]
