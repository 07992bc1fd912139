"""Benchmarks: hub loading through `datasets` (on a local copy), clear offline errors, files and tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from skyfilter import benchmarks as bm
from skyfilter.benchmarks import BenchmarkError, HubBenchmark, benchmark_from_table, load_benchmark
from skyfilter.io import InputError, open_source


def test_named_benchmark_loads_through_datasets(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    repo = tmp_path / "reward-bench"
    (repo / "data").mkdir(parents=True)
    subsets = ["alpacaeval-easy", "xstest-should-respond"]
    table = pa.table({"prompt": ["first prompt here", "second prompt"], "subset": subsets, "chosen": ["a", "b"]})
    pq.write_table(table, repo / "data" / "filtered-00000-of-00001.parquet")
    monkeypatch.setitem(bm.HUB_BENCHMARKS, "rewardbench", HubBenchmark(str(repo), "filtered"))
    bench = load_benchmark("rewardbench")
    assert bench.name == "rewardbench" and bench.prompts.to_pylist() == ["first prompt here", "second prompt"]
    assert bench.subset_names() == ["alpacaeval-easy", "xstest-should-respond"]


def test_offline_hub_gives_a_one_line_hint():
    pytest.importorskip("datasets")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": os.path.join(os.getcwd(), ".no-such-hf-home")}
    exe = os.path.join(os.path.dirname(sys.executable), "skyfilter")
    done = subprocess.run([exe, "contaminate", "--demo", "--bench", "rewardbench"], capture_output=True, text=True,
                          env=env, check=False)  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "allenai/reward-bench" in lines[0] and "--bench-file" in lines[0]


def test_benchmark_files_with_message_and_list_prompts(tmp_path):
    path = tmp_path / "mt.jsonl"
    rows = [{"turns": ["Compose an engaging travel blog post", "Rewrite it"], "category": "writing"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = load_benchmark(path, prompt_column="turns", subset_column="category")
    assert bench.prompts.to_pylist() == ["Compose an engaging travel blog post"] and bench.subset_names() == ["writing"]
    messages = pa.table({"prompt": [[{"role": "system", "content": "s"}, {"role": "user", "content": "hi there"}]]})
    assert benchmark_from_table(messages, "m").prompts.to_pylist() == ["hi there"]


def test_benchmark_errors():
    with pytest.raises(BenchmarkError, match="no such benchmark file; named benchmarks are rewardbench"):
        load_benchmark("rewardbench-3")
    with pytest.raises(BenchmarkError, match="no prompt column 'prompt'"):
        benchmark_from_table(pa.table({"q": ["x"]}), "t")
    with pytest.raises(BenchmarkError, match="no non-empty prompts"):
        benchmark_from_table(pa.table({"prompt": pa.array([None, ""], pa.string())}), "t")
    # the default subset column is used when present; one named must be there (a misspelt one lost the subsets)
    assert benchmark_from_table(pa.table({"prompt": ["x"]}), "t").subsets is None
    with pytest.raises(BenchmarkError, match=r"t: no subset column 'subsett'; columns are \['prompt', 'subset'\]"):
        benchmark_from_table(pa.table({"prompt": ["x"], "subset": ["s"]}), "t", subset_column="subsett")


def test_real_benchmark_sources(shared_data):
    mtbench = load_benchmark(
        shared_data / "bench/mtbench/question.jsonl", prompt_column="turns", subset_column="category"
    )
    assert len(mtbench) == 80 and mtbench.prompts.null_count == 0
    sources = load_benchmark(shared_data / "bench/rewardbench_sources/rewardbench_prompt_sources_all.jsonl",
                             subset_column="subset_family")  # fmt: skip
    assert len(sources) == 4341 and "math-prm" in set(sources.subset_names())


def test_hub_dataset_input_goes_through_load_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(repo, split):
        calls.append((repo, split))
        return datasets.Dataset.from_dict({"prompt": ["p"], "chosen": ["c"], "rejected": ["r"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    source = open_source("someone/pairs", split="test")
    assert calls == [("someone/pairs", "test")] and source.name == "someone/pairs:test"
    assert pa.Table.from_batches(list(source.batches())).column("prompt").to_pylist() == ["p"]


def test_unreachable_hub_dataset_input_is_one_clear_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(repo, split):
        raise ConnectionError(f"Couldn't reach '{repo}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError, match="someone/pairs: could not load split 'train'"):
        open_source("someone/pairs")
