"""What users of TRL and OpenRLHF expect of a trainer, on the tiny model: per-pair margins from a named column, a
chat template given on the command line, evaluation during training with the best model kept, the metrics in
TensorBoard and W&B (offline), and the tokenisation done once and cached."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from skyrm.config import ConfigError, load_config  # noqa: E402
from skyrm.data import encode_pairs  # noqa: E402
from skyrm.model import tiny_tokenizer  # noqa: E402
from skyrm.templates import TEMPLATES  # noqa: E402
from skyrm.trainer import train  # noqa: E402

from tests.skyrm.test_trainer import metrics, write_task  # noqa: E402


def run(tmp_path: Path, name: str, log: list | None = None, **overrides) -> dict:
    config = load_config(preset="tiny", overrides={
        "data": str(tmp_path / "train.parquet"), "output_dir": str(tmp_path / name), "max_steps": 4,
        "batch_pairs": 8, "micro_batch_tokens": 512, "max_length": 128, "lr": 3e-3, "report_to": "none",
    } | overrides)  # fmt: skip
    return train(config, log=(log.append if log is not None else lambda _: None))


@pytest.fixture
def task(tmp_path):
    write_task(tmp_path / "train.parquet", 64, 0)
    write_task(tmp_path / "test.parquet", 24, 1)
    return tmp_path


def test_margins_come_from_the_named_column(task):
    table = pq.read_table(task / "train.parquet")
    gaps = [float(i % 3) for i in range(table.num_rows)]
    pq.write_table(table.append_column("gap", pa.array(gaps)), task / "gap.parquet")
    pq.write_table(table.append_column("margin", pa.array(gaps)), task / "margin.parquet")
    assert (
        encode_pairs(table.append_column("gap", pa.array(gaps)), tiny_tokenizer(), 128, margin_column="gap").margins
        == gaps
    )
    with pytest.raises(ValueError, match=r"--margin-column nope: no such column; the columns are \['prompt'"):
        encode_pairs(table, tiny_tokenizer(), 128, margin_column="nope")
    named = run(task, "named", data=str(task / "gap.parquet"), margin_column="gap", loss="margin-mse")
    trl = run(task, "trl", data=str(task / "margin.parquet"), loss="margin-mse")
    plain = run(task, "plain", loss="margin-mse")  # the loss's own margin (1) for every pair
    losses = {name: [r["loss"] for r in metrics(task / name)] for name in ("named", "trl", "plain")}
    assert losses["named"] == losses["trl"] != losses["plain"]
    assert named["config"]["margin_column"] == "gap" and trl["pairs"] == plain["pairs"] == 64
    with pytest.raises(ValueError, match=r"train.parquet: --margin-column gap: no such column"):
        run(task, "missing", margin_column="gap", loss="margin-mse")
    assert not (task / "missing").exists()


def test_a_chat_template_by_name_or_file_is_trained_and_exported(task):
    log: list[str] = []
    run(task, "chatml", log, chat_template="chatml")
    shown = "\n".join(log)
    # the first pair is shown once, as the model reads it: the BOS, the ChatML markers, the answer
    assert shown.count("the first pair as the model reads it") == 1
    assert "--- chosen (" in shown and "<s><|im_start|>user\nTell me about" in shown and "<|im_end|>" in shown
    exported = transformers.AutoTokenizer.from_pretrained(task / "chatml" / "model")
    assert exported.chat_template == TEMPLATES["chatml"]
    template = task / "plain.jinja"
    template.write_text("{% for m in messages %}{{ m['role'] | upper }}: {{ m['content'] }}\n{% endfor %}")
    log.clear()
    run(task, "file", log, chat_template=str(template))
    assert "<s>USER: Tell me about" in "\n".join(log)
    with pytest.raises(ValueError, match=r"^--chat-template vicuna: no such file, and not a built-in format"):
        run(task, "unknown", chat_template="vicuna")
    assert not (task / "unknown").exists()


def test_a_tokenizer_without_a_template_names_the_flag():
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    table = pa.table({"prompt": ["hi"], "chosen": ["a"], "rejected": ["b"]})
    with pytest.raises(ValueError, match="give one with --chat-template FILE|NAME"):
        encode_pairs(table, tokenizer, 64)


def write_pairwise(path: Path, source: Path) -> None:
    """The held-out task as a pairwise file (response_a / response_b and a label), the better answer on either
    side."""
    rows = pq.read_table(source).to_pylist()
    out = []
    for i, r in enumerate(rows):
        a, b, label = (r["chosen"], r["rejected"], "A>B") if i % 2 else (r["rejected"], r["chosen"], "B>A")
        out.append({"prompt": r["prompt"], "response_a": a, "response_b": b, "label": label})
    path.write_text("".join(json.dumps(r) + "\n" for r in out))


def test_evaluation_during_training_keeps_the_best_model(task):
    write_pairwise(task / "duel.jsonl", task / "test.parquet")
    summary = run(task, "evals", eval_data=str(task / "test.parquet"), eval_bench=f"sample,{task / 'duel.jsonl'}",
                  eval_every=2, max_steps=6, save_best="bench/duel/accuracy")  # fmt: skip
    records = metrics(task / "evals")
    evaluated = [r for r in records if "eval/accuracy" in r]
    assert [r["step"] for r in evaluated] == [2, 4, 6]
    for r in evaluated:
        assert {"eval/margin", "eval/reward_mean", "eval/reward_std", "bench/sample/score", "bench/sample/chat",
                "bench/sample/chat_hard", "bench/sample/safety", "bench/sample/reasoning"} <= set(r)  # fmt: skip
    # the evaluation at the last step is the run's final held-out evaluation
    assert evaluated[-1]["eval/accuracy"] == summary["eval"]["accuracy"]
    values = [r["bench/duel/accuracy"] for r in evaluated]
    best_step = evaluated[values.index(max(values))]["step"]
    saved = json.loads((task / "evals" / "best-model" / "best.json").read_text())
    assert saved == {"metric": "bench/duel/accuracy", "value": max(values), "step": best_step} == {
        k: summary["best"][k] for k in ("metric", "value", "step")}  # fmt: skip
    # the kept model is the one evaluated then: plain transformers scores the pairwise file to the same accuracy
    folder = task / "evals" / "best-model"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    correct = 0
    for line in (task / "duel.jsonl").read_text().splitlines():
        r = json.loads(line)
        scores = []
        for answer in (r["response_a"], r["response_b"]):
            messages = [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": answer}]
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            with torch.no_grad():
                scores.append(model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0])
        correct += bool(scores[0] > scores[1]) == (r["label"] == "A>B")
    assert correct / 24 == saved["value"]


def test_evaluation_settings_are_checked_before_any_work(task):
    with pytest.raises(ConfigError, match="eval_every: needs something to evaluate on"):
        load_config(overrides={"data": "x", "eval_every": 5})
    with pytest.raises(ConfigError, match="save_best: evaluates at every --eval-every steps"):
        load_config(overrides={"data": "x", "eval_data": "y", "save_best": "eval/accuracy"})
    with pytest.raises(ValueError, match=r"--save-best bench/other/score: not a metric of this run's evaluations, "
                                         r"which record eval/\.\.\., bench/sample/\.\.\."):  # fmt: skip
        run(task, "bad-metric", eval_data=str(task / "test.parquet"), eval_bench="sample", eval_every=2,
            save_best="bench/other/score")  # fmt: skip
    with pytest.raises(ValueError, match="no-such.jsonl: no such file"):
        run(task, "bad-bench", eval_bench=str(task / "no-such.jsonl"), eval_every=2)
    with pytest.raises(ConfigError, match="report_to: must be a comma-separated list of tensorboard, wandb, or none"):
        load_config(overrides={"data": "x", "report_to": "tensorboard,mlflow"})
    # a benchmark example the chat template refuses (a system turn under Gemma's) fails now, not at the first evaluation
    from skyrm.model import TINY_CHAT_TEMPLATE

    from tests.skyrm.test_data import NO_SYSTEM_TURN

    (task / "t.jinja").write_text(NO_SYSTEM_TURN + TINY_CHAT_TEMPLATE, encoding="utf-8")
    system = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Name a prime."}]
    pq.write_table(pa.Table.from_pylist([{"prompt": system, "chosen": "7", "rejected": "9", "subset": "chat"}]),
                   task / "system.parquet")  # fmt: skip
    with pytest.raises(ValueError, match=r"system.parquet: example 0 \(subset chat\): the chat template refuses"):
        run(task, "refused", eval_bench=str(task / "system.parquet"), eval_every=2, chat_template=str(task / "t.jinja"))
    assert not any((task / name).exists() for name in ("bad-metric", "bad-bench", "refused"))


def wandb_records(folder: Path) -> list:
    """The records of an offline W&B run: its ``.wandb`` file is a LevelDB-style log (a 7-byte file header, then
    32 KiB blocks of chunks, each with a 7-byte header: checksum, length, type full/first/middle/last) of
    protobuf records."""
    from wandb.proto import wandb_internal_pb2

    data = next(folder.glob("wandb/offline-run-*/run-*.wandb")).read_bytes()
    block, at, pending, records = 32768, 7, b"", []
    while at + 7 <= len(data):
        if block - at % block < 7:  # a block's tail too short for a header is padding
            at += block - at % block
            continue
        _, length, kind = struct.unpack("<IHB", data[at : at + 7])
        chunk, at = data[at + 7 : at + 7 + length], at + 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def test_metrics_reach_tensorboard_and_wandb(task, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run(task, "tracked", report_to="tensorboard,wandb", eval_data=str(task / "test.parquet"), eval_every=2)
    folder = task / "tracked"
    records = metrics(folder)
    history = {}
    config = {}
    for record in wandb_records(folder):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history[items["_step"]] = items
        elif kind == "run":
            config |= {item.key: json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "config":
            config |= {item.key: json.loads(item.value_json) for item in record.config.update}
    assert sorted(history) == [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert history[r["step"]]["train/loss"] == pytest.approx(r["loss"])
        assert history[r["step"]].get("eval/accuracy") == r.get("eval/accuracy")
    assert config["config"]["report_to"] == "tensorboard,wandb" and config["config"]["eval_every"] == 2
    assert config["data"]["pairs"] == 64 and len(config["data"]["data_hash"]) == 32
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([r["loss"] for r in records])
    assert [e.step for e in events.Scalars("eval/accuracy")] == [2, 4]


def test_wandb_missing_is_one_line_before_any_work(task, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed: importing it fails
    with pytest.raises(ImportError, match=r"--report-to wandb needs the `wandb` package, which is not installed"):
        run(task, "no-wandb", report_to="wandb")
    assert not (task / "no-wandb").exists()


def test_tokenisation_is_cached(task, monkeypatch):
    cache = task / "cache"
    log: list[str] = []
    first = run(task, "first", log, cache_dir=str(cache))
    assert any("tokenized 64 pairs" in line for line in log)
    entries = sorted(cache.glob("tokenized/*.arrow"))
    assert len(entries) == 1
    log.clear()
    second = run(task, "second", log, cache_dir=str(cache))
    assert any("read from the tokenisation cache" in line for line in log)
    assert not any("tokenized" in line and "pairs in" in line for line in log)
    assert [r["loss"] for r in metrics(task / "first")] == [r["loss"] for r in metrics(task / "second")]
    assert first["pairs"] == second["pairs"]
    # another setting that changes the token ids is another entry; an entry that cannot be read is made again
    run(task, "third", cache_dir=str(cache), max_length=100)
    assert len(list(cache.glob("tokenized/*.arrow"))) == 2
    entries[0].write_bytes(b"not arrow")
    log.clear()
    run(task, "fourth", log, cache_dir=str(cache))
    assert any("tokenized 64 pairs" in line for line in log) and entries[0].stat().st_size > 100
    log.clear()
    run(task, "off", log, cache_dir=str(cache), tokenize_cache=False)
    assert any("tokenized 64 pairs" in line for line in log) and len(list(cache.glob("tokenized/*.arrow"))) == 2


def test_liger_kernels_need_a_gpu(task):
    # Liger's kernels are Triton kernels: on the CPU the flag is refused before any work (the GPU check measures them)
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: bench/gpu_check.py measures --liger-kernels")
    with pytest.raises(ValueError, match=r"^--liger-kernels: Liger's kernels are Triton kernels for CUDA GPUs"):
        run(task, "liger", liger_kernels=True)
    assert not (task / "liger").exists()
