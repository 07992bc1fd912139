"""The whole job in one call: curate preference data with a skyfilter recipe, train a reward model on it, score
the model on a benchmark, and summarise. ``skyrm pipeline --sample`` runs it offline on the shipped samples.

Folders under ``out``: ``curated/`` (skyfilter's output: data, dropped rows, manifest, report), ``pairs/``
(``train.parquet`` and ``test.parquet``, a seeded split of the curated pairs), ``train/`` (the trainer's output
with ``model/``), ``eval/`` (``results.json`` and ``results.examples.jsonl``), and ``summary.json``. ``out`` must
be a new folder in a writable place (checked before any work); a run that fails removes it.

``two_stage`` (``--two-stage``) runs the paper's two WildGuardMix stages: ``stage1/`` holds the first curation (its
WildGuardMix pairs the adversarial ones), the pairs and the reward model trained on every source but WildGuardMix,
and that model's scores of the WildGuardMix pairs (``scores.parquet``, written by ``skyrm score``); the final
curation then keeps the WildGuardMix pairs that model ranks correctly (the recipe's ``reading = "both"``), and
``manifest.json`` records both curations, the scoring model (path, weights hash, held-out accuracy) and its scores.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
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
    two_stage: bool = False,
    log=print,
) -> dict:
    """Curates, trains and evaluates into the new folder ``out``; returns (and writes) the summary. ``two_stage``:
    the paper's WildGuardMix stage 2 first (see :func:`_first_stage`)."""
    from skyrm.eval.runner import load_benchmark

    out = Path(out)
    try:
        check_folder("--out", out)
    except OutputError as e:
        raise PipelineError(str(e)) from None
    bench = bench or ("sample" if sample else "rewardbench")
    benchmark = load_benchmark(bench, bench_file)  # fails early, before any work, when it cannot be read
    the_recipe = _recipe(recipe, two_stage)
    out.mkdir(parents=True)
    try:
        job = _Job(out, sample, data_dir, model, train_overrides or {}, held_out, seed, log)
        return _run(job, the_recipe, benchmark, two_stage)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # the folder is this run's own: a failed run leaves nothing
        raise


def _recipe(name: str, two_stage: bool):
    from skyfilter import RecipeError, load_recipe

    try:
        recipe = load_recipe(name)
    except RecipeError as e:
        raise PipelineError(f"curate: {e}") from None
    if two_stage and recipe.wildguardmix is None:
        raise PipelineError(f"--two-stage: the recipe {recipe.name} has no [select.wildguardmix] rule to score")
    return recipe


@dataclass
class _Job:
    out: Path
    sample: bool
    data_dir: str | None
    model: str
    train_overrides: dict
    held_out: float
    seed: int
    log: object


def _curate(job: _Job, recipe, folder: Path):
    from skyfilter import CurateError, RecipeError, run_curate

    try:
        return run_curate(recipe, folder, sample=job.sample, data_dir=job.data_dir, plots=False, log=job.log)
    except (CurateError, RecipeError) as e:
        raise PipelineError(f"curate: {e}") from None


def _train(job: _Job, pairs: Path, folder: Path) -> tuple[dict, object, dict]:
    """``pairs`` split into ``folder/pairs`` (train and held-out), a model trained on them into ``folder/train``:
    the trainer's summary, its config and the metrics of the first and last steps."""
    from skyrm.config import load_config
    from skyrm.trainer import train

    n_train, n_test = _split(pairs, folder / "pairs", job.held_out, job.seed)
    job.log(f"split the {n_train + n_test:,} curated pairs: {n_train:,} to train on, {n_test:,} held out")
    overrides = {"model": job.model, "data": str(folder / "pairs" / "train.parquet"),
                 "output_dir": str(folder / "train"), "seed": job.seed, "truncation": "truncate",
                 **job.train_overrides}  # fmt: skip
    if n_test:
        overrides["eval_data"] = str(folder / "pairs" / "test.parquet")
    if job.model == "tiny":  # byte-level tokens: room for the samples' answers
        overrides = (
            {"max_length": 1024, "micro_batch_tokens": 8192} | (SAMPLE_TRAINING if job.sample else {}) | overrides
        )
    config = load_config(preset="tiny" if job.model == "tiny" else None, overrides=overrides)
    trained = train(config, log=job.log)
    metrics = [json.loads(line) for line in (folder / "train" / "metrics.jsonl").read_text().splitlines()]
    return trained, config, {"first": metrics[0], "last": metrics[-1]}


def _first_stage(job: _Job, recipe) -> tuple[object, dict]:
    """WildGuardMix stage 2 of the paper: the recipe curated with its stage-1 WildGuardMix rule (the pairs layout,
    which keeps each pair's source row), a reward model trained on every source but WildGuardMix, and its scores of
    the WildGuardMix pairs (``skyrm score``). Returns the recipe for the final curation (WildGuardMix read "both":
    the adversarial pairs that model ranks correctly) and what the stage did."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from skyrm.score import ScoreOptions, score_pool

    rule = recipe.wildguardmix
    stage = job.out / "stage1"
    first_rule = dataclasses.replace(rule, reading="adversarial", scores=None)
    job.log("== stage 1: curate (WildGuardMix: its adversarial pairs) ==")
    manifest = _curate(job, dataclasses.replace(recipe, output="pairs", wildguardmix=first_rule), stage / "curated")
    pool = pq.read_table(stage / "curated" / "data" / "train-00000-of-00001.parquet")
    guard = pc.is_in(pool["source"], pa.array(rule.sources))
    others, scored = stage / "others.parquet", stage / "wildguardmix.parquet"
    pq.write_table(pool.filter(pc.invert(guard)), others)
    pq.write_table(pool.filter(guard), scored)
    job.log(f"== stage 1: train on the {len(pool) - pc.sum(guard).as_py():,} pairs of the other sources ==")
    trained, config, _ = _train(job, others, stage)
    model = stage / "train" / "model"
    job.log(f"== stage 1: score the {pc.sum(guard).as_py():,} {', '.join(rule.sources)} pairs ==")
    scores = stage / "scores.parquet"
    summary = score_pool(str(scored), str(model), scores, ScoreOptions(max_length=config.max_length), log=job.log)
    done = {
        "curate": manifest.steps,
        "scoring_model": {"path": str(model), "sha256": summary["model_sha256"], "trained_pairs": trained["pairs"],
                          "held_out_accuracy": trained.get("eval", {}).get("accuracy"),
                          "held_out_pairs": trained.get("eval", {}).get("pairs")},
        "scores": {"path": str(scores), "pairs": summary["scored_pairs"],
                   "ranked_correctly": summary["ranked_correctly"], "accuracy": summary["accuracy"]},
    }  # fmt: skip
    return dataclasses.replace(recipe, wildguardmix=dataclasses.replace(rule, reading="both", scores=str(scores))), done


def _run(job: _Job, recipe, benchmark, two_stage: bool) -> dict:
    from skyrm.eval.runner import evaluate, load_model, table_of, write_results

    out, log = job.out, job.log
    first = None
    if two_stage:
        recipe, first = _first_stage(job, recipe)
    log(
        "== 1/3 curate =="
        if not two_stage
        else "== stage 2: curate (WildGuardMix: the pairs that model ranks right) =="
    )
    manifest = _curate(job, recipe, out / "curated")
    log("== 2/3 train ==")
    trained, config, metrics = _train(job, out / "curated" / "data" / "train-00000-of-00001.parquet", out)

    log("== 3/3 evaluate ==")
    folder = out / "train" / "model"
    reward_model, tokenizer = load_model(str(folder), config.trust_remote_code)  # bf16 on a GPU, fp32 on the CPU
    records = evaluate(reward_model, tokenizer, benchmark, max_length=config.max_length)
    table = table_of(records, benchmark.kind)
    write_results(out / "eval" / "results.json", str(folder), table, benchmark.kind, records)

    summary = {
        # convert counts input rows (a HelpSteer2 pair is two of them); what it hands on is its pairs
        "curate": _steps(manifest.steps),
        "train": {"steps": trained["steps"], "pairs": trained["pairs"], "first_loss": metrics["first"]["loss"],
                  "last_loss": metrics["last"]["loss"], "last_accuracy": metrics["last"]["accuracy"],
                  "held_out_accuracy": trained.get("eval", {}).get("accuracy"),
                  "held_out_pairs": trained.get("eval", {}).get("pairs"),
                  "held_out_read": trained.get("eval", {}).get("pairs_read")},
        "eval": {"benchmark": benchmark.name, "sections": table["sections"]},
        "outputs": {"curated": str(out / "curated"), "model": str(folder), "results": str(out / "eval")},
    }  # fmt: skip
    if first is not None:
        summary["stage1"] = {"curate": _steps(first["curate"]), "scoring_model": first["scoring_model"],
                             "scores": first["scores"]}  # fmt: skip
        _write_manifest(out, first, manifest)
    if job.sample:
        summary["note"] = SAMPLE_NOTE
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log("\n" + format_summary(summary, table))
    return summary


def _steps(steps: list[dict]) -> list[dict]:
    return [{"step": s["step"], "in": s["rows_in"], "out": s.get("pairs", s["rows_out"])} for s in steps]


def _write_manifest(out: Path, first: dict, final) -> None:
    """``manifest.json`` of a two-stage run: stage 1's curation (every row of every source, and why each dropped
    row went), the scoring model (path, weights hash, held-out accuracy) and its scores, and the final curation
    (stage 2: the same steps, with the WildGuardMix pairs the model ranks wrong dropped as ``rm_agreement``)."""
    manifest = {"stages": [
        {"stage": 1, "curate": first["curate"], "manifest": str(out / "stage1" / "curated" / "manifest.json")},
        {"stage": "scoring", "model": first["scoring_model"], "scores": first["scores"]},
        {"stage": 2, "curate": final.steps, "manifest": str(out / "curated" / "manifest.json")},
    ]}  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def format_summary(summary: dict, table: dict) -> str:
    from skyrm.eval.runner import format_table

    lines = ["== summary =="]
    if "stage1" in summary:
        first, model, scores = (
            summary["stage1"]["curate"],
            summary["stage1"]["scoring_model"],
            summary["stage1"]["scores"],
        )
        accuracy = model["held_out_accuracy"]
        lines += [f"stage 1: curated {first[-1]['out']:,} pairs; a reward model trained on {model['trained_pairs']:,} "
                  f"pairs of the other sources (held-out accuracy "
                  f"{'n/a' if accuracy is None else f'{accuracy:.3f}'}) ranks {scores['ranked_correctly']:,} of the "
                  f"{scores['pairs']:,} WildGuardMix pairs correctly: those are kept"]  # fmt: skip
    lines.append("curation (rows in -> pairs out; convert reads input rows):")
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
