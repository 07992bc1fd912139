"""The whole job in one call: curate preference data with a skyfilter recipe, train a reward model on it, score
the model on a benchmark, and summarise. ``skyrm pipeline --sample`` runs it offline on the shipped samples.

Folders under ``out``: ``curated/`` (skyfilter's output: data, dropped rows, manifest, report), ``pairs/``
(``train.parquet`` and ``test.parquet``, a seeded split of the curated pairs), ``train/`` (the trainer's output
with ``model/``), ``eval/`` (``results.json`` and ``results.examples.jsonl``), and ``summary.json``. ``out`` must
be a new folder in a writable place (checked before any work); a run that fails removes it.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from skyshared.outputs import OutputError, check_folder

__all__ = ["run_pipeline", "PipelineError"]


#: Said with every ``--sample`` summary, so that its accuracies are not read as a model's quality.
SAMPLE_NOTE = ("the shipped sample is synthetic: its rejected answers are degraded on purpose (cut off mid-sentence, "
               "word salad, stuck in a loop, needless refusals, unsafe compliance with harmful requests) and the "
               "benchmark sample's the same ways, so high accuracy shows that the pipeline learns, not that this is a "
               "good reward model.")  # fmt: skip

#: The tiny model's training on ``--sample`` (under any given overrides): the answers' last 512 bytes are where
#: the sample's degradations show, and two epochs over them cost less than one at 1,024 bytes did (40 s end to end
#: against 88 s on 2 cores; at one epoch at 1e-3 a first version of this sample
#: reached 0.61 held out).
SAMPLE_TRAINING = {"max_length": 512, "epochs": 2.0, "lr": 2e-3}


class PipelineError(ValueError):
    """A pipeline that cannot start or finish; the message says which step and why."""


def _split(data: Path, folder: Path, held_out: float, seed: int) -> tuple[int, int]:
    import pyarrow.parquet as pq

    table = pq.read_table(data)
    rows = list(range(table.num_rows))
    random.Random(seed).shuffle(rows)
    cut = max(1, int(round(held_out * len(rows)))) if held_out > 0 else 0
    test, train = sorted(rows[:cut]), sorted(rows[cut:])
    folder.mkdir(parents=True)
    pq.write_table(table.take(train), folder / "train.parquet")
    if test:
        pq.write_table(table.take(test), folder / "test.parquet")
    return len(train), len(test)


def run_pipeline(
    out: str | Path,
    *,
    sample: bool = False,
    recipe: str = "skywork-80k-v0.2",
    data_dir: str | None = None,
    model: str = "tiny",
    train_overrides: dict | None = None,
    bench: str | None = None,
    bench_file: str | None = None,
    held_out: float = 0.1,
    seed: int = 0,
    log=print,
) -> dict:
    """Curates, trains and evaluates into the new folder ``out``; returns (and writes) the summary."""
    from skyrm.eval.runner import load_benchmark

    out = Path(out)
    try:
        check_folder("--out", out)
    except OutputError as e:
        raise PipelineError(str(e)) from None
    bench = bench or ("sample" if sample else "rewardbench")
    benchmark = load_benchmark(bench, bench_file)  # fails early, before any work, when it cannot be read
    out.mkdir(parents=True)
    try:
        return _run(out, benchmark, sample, recipe, data_dir, model, train_overrides, held_out, seed, log)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # the folder is this run's own: a failed run leaves nothing
        raise


def _run(out: Path, benchmark, sample: bool, recipe: str, data_dir: str | None, model: str,
         train_overrides: dict | None, held_out: float, seed: int, log) -> dict:  # fmt: skip
    from skyfilter import CurateError, RecipeError, load_recipe, run_curate

    from skyrm.config import load_config
    from skyrm.eval.runner import evaluate, load_model, table_of, write_results
    from skyrm.trainer import train

    log("== 1/3 curate ==")
    try:
        manifest = run_curate(load_recipe(recipe), out / "curated", sample=sample, data_dir=data_dir, plots=False,
                              log=log)  # fmt: skip
    except (CurateError, RecipeError) as e:
        raise PipelineError(f"curate: {e}") from None
    curated = out / "curated" / "data" / "train-00000-of-00001.parquet"
    n_train, n_test = _split(curated, out / "pairs", held_out, seed)
    log(f"split the {n_train + n_test:,} curated pairs: {n_train:,} to train on, {n_test:,} held out")

    log("== 2/3 train ==")
    overrides = {"model": model, "data": str(out / "pairs" / "train.parquet"),
                 "output_dir": str(out / "train"), "seed": seed, "truncation": "truncate",
                 **(train_overrides or {})}  # fmt: skip
    if n_test:
        overrides["eval_data"] = str(out / "pairs" / "test.parquet")
    if model == "tiny":  # byte-level tokens: room for the samples' answers
        overrides = {"max_length": 1024, "micro_batch_tokens": 8192} | (SAMPLE_TRAINING if sample else {}) | overrides
    config = load_config(preset="tiny" if model == "tiny" else None, overrides=overrides)
    trained = train(config, log=log)
    metrics = [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]

    log("== 3/3 evaluate ==")
    folder = out / "train" / "model"
    reward_model, tokenizer = load_model(str(folder))  # bf16 on a GPU, fp32 on the CPU
    records = evaluate(reward_model, tokenizer, benchmark, max_length=config.max_length)
    table = table_of(records, benchmark.kind)
    write_results(out / "eval" / "results.json", str(folder), table, benchmark.kind, records)

    summary = {
        # convert counts input rows (a HelpSteer2 pair is two of them); what it hands on is its pairs
        "curate": [{"step": s["step"], "in": s["rows_in"], "out": s.get("pairs", s["rows_out"])}
                   for s in manifest.steps],
        "train": {"steps": trained["steps"], "pairs": trained["pairs"], "first_loss": metrics[0]["loss"],
                  "last_loss": metrics[-1]["loss"], "last_accuracy": metrics[-1]["accuracy"],
                  "held_out_accuracy": trained.get("eval", {}).get("accuracy"),
                  "held_out_pairs": trained.get("eval", {}).get("pairs"),
                  "held_out_read": trained.get("eval", {}).get("pairs_read")},
        "eval": {"benchmark": benchmark.name, "sections": table["sections"]},
        "outputs": {"curated": str(out / "curated"), "model": str(folder), "results": str(out / "eval")},
    }  # fmt: skip
    if sample:
        summary["note"] = SAMPLE_NOTE
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log("\n" + format_summary(summary, table))
    return summary


def format_summary(summary: dict, table: dict) -> str:
    from skyrm.eval.runner import format_table

    lines = ["== summary ==", "curation (rows in -> pairs out; convert reads input rows):"]
    lines += [f"  {s['step']:<14}{s['in']:>9,} -> {s['out']:,}" for s in summary["curate"]]
    t = summary["train"]
    held = (f", held-out accuracy {t['held_out_accuracy']:.3f} on {t['held_out_pairs']:,} of {t['held_out_read']:,} "
            "pairs" if t["held_out_accuracy"] is not None else "")  # fmt: skip
    lines.append(f"training: {t['steps']} steps on {t['pairs']:,} pairs, loss {t['first_loss']:.4f} -> "
                 f"{t['last_loss']:.4f}, last-step accuracy {t['last_accuracy']:.3f}{held}")  # fmt: skip
    lines.append(f"evaluation on {summary['eval']['benchmark']}:")
    lines += ["  " + line for line in format_table(table).splitlines()]
    lines.append("outputs: " + ", ".join(f"{k} {v}" for k, v in summary["outputs"].items()))
    if "note" in summary:
        lines.append("note: " + summary["note"])
    return "\n".join(lines)
