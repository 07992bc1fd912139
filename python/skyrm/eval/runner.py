"""Scoring a reward model on a benchmark: load the rows, format each completion as the official runner does,
compute one reward per completion in length-sorted batches, and turn the per-example rewards into the table.

Formatting: the tokenizer's chat template over ``[user: prompt, assistant: response]`` (a list prompt is a
conversation whose turns alternate user / assistant), no generation prompt. ``bos="single"`` (default) keeps
exactly one BOS token; ``bos="official"`` tokenizes the template's text the way the official runner does
(special tokens added again, so a template that writes its own BOS gets two, as Llama-3's do), for
reproducing published numbers of models that were scored that way.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from skyshared.hub import hub_access
from skyshared.outputs import Staged

from skyrm.data import read_rows
from skyrm.eval.rewardbench import (
    EXAMPLE_COUNTS,
    RB2_SUBSETS,
    SECTIONS,
    best_of_n_credit,
    pair_correct,
    rb2_score,
    section_scores,
    ties_score,
)
from skyrm.requires import first_line, require

__all__ = ["BENCHES", "Benchmark", "load_benchmark", "Encoder", "score_sequences", "evaluate", "load_model", "rescore",
           "comparison_markdown", "write_results", "results_files", "examples_path", "BenchmarkError"]  # fmt: skip

#: Named benchmarks: hub dataset, split, kind.
BENCHES = {
    "rewardbench": ("allenai/reward-bench", "filtered", "rewardbench"),
    "rewardbench-2": ("allenai/reward-bench-2", "test", "rewardbench-2"),
}
KINDS = ("rewardbench", "rewardbench-2", "pairwise")
#: ``--bench sample``: the project's synthetic rows in RewardBench's layout (every subset; offline demos and tests).
SAMPLE = "sample"
A_WINS = ("A>B", "A", "a", "1", "model_a", "response_a")
B_WINS = ("B>A", "B", "b", "2", "model_b", "response_b")


class BenchmarkError(ValueError):
    """A benchmark that cannot be scored; the message names the file and what is wrong."""


@dataclass
class Benchmark:
    """Rows in one layout: ``prompts`` (str or list of messages), ``completions`` (per row: the correct one(s)
    first), ``num_correct``, ``subsets``, ``ids``; ``skipped`` counts rows left out (pairwise ties;
    ``skipped_labels`` by label), ``bad_rows`` the rows of the file that could not be read (set apart, see
    :func:`load_benchmark`)."""

    name: str
    kind: str
    prompts: list
    completions: list[list[str]]
    num_correct: list[int]
    subsets: list[str]
    ids: list[str]
    skipped: int = 0
    skipped_labels: dict = field(default_factory=dict)
    bad_rows: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)


def _kinds(kind: str, columns: dict) -> dict[str, tuple[str, ...]]:
    """What the columns a benchmark layout reads may hold in a JSON file (see :func:`skyrm.data.read_rows`)."""
    prompt = ("string", "message list")
    if kind == "pairwise":
        c = {"prompt": "prompt", "a": "response_a", "b": "response_b", "label": "label"} | columns
        texts = dict.fromkeys(_prompt_columns(c["prompt"]), prompt)
        return texts | {c["a"]: ("string",), c["b"]: ("string",), c["label"]: ("string", "number")}
    answers = ("list",) if kind == "rewardbench-2" else ("string",)
    return {"prompt": prompt, "chosen": answers, "rejected": answers, "subset": ("string",)}


def _need(table: pa.Table, name: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise BenchmarkError(f"{name}: missing column(s) {missing}; the columns are {table.column_names}")


def load_benchmark(bench: str | None = None, bench_file: str | None = None, kind: str | None = None,
                   columns: dict | None = None, keep_bad: bool = False) -> Benchmark:  # fmt: skip
    """A named benchmark from the hub (through ``datasets``, its cache and offline mode) or a local file of the
    same layout; ``kind="pairwise"`` reads a file of two responses and a label (``columns`` names them). A row of a
    JSON file that cannot be read is an error naming file, line and column, or with ``keep_bad`` is left out and
    listed in the benchmark's ``bad_rows``."""
    input_rows = None
    if bench_file is None and bench == SAMPLE:
        from skyrm.eval.sample import sample_benchmark

        table, name, kind = sample_benchmark(), "skyrm synthetic RewardBench-layout sample", "rewardbench"
    elif bench_file is None:
        if bench not in BENCHES:
            raise BenchmarkError(f"unknown benchmark {bench!r}; known: {', '.join([*BENCHES, SAMPLE])} (or give "
                                 "--bench-file)")  # fmt: skip
        dataset, split, kind = BENCHES[bench]
        require(f"--bench {bench} (the hub's {dataset}; or give --bench-file)", "datasets")
        import datasets

        with hub_access() as offline:
            try:
                table = datasets.load_dataset(dataset, split=split).data.table
            except Exception as e:  # no network, no cache: say what to do
                where = "its local cache (the hub cannot be reached)" if offline else "the hub or its local cache"
                raise BenchmarkError(
                    f"could not load {dataset} (split {split}) from {where}: {first_line(e)}. Without network, point "
                    f"--bench-file at a local copy (parquet or jsonl, e.g. from `hf download {dataset} --repo-type "
                    "dataset`)"
                ) from None
        name = dataset
    else:
        kind = kind or (BENCHES[bench][2] if bench in BENCHES else "rewardbench")
        if kind not in KINDS:
            raise BenchmarkError(f"unknown format {kind!r}; formats are {', '.join(KINDS)}")
        if not Path(bench_file).exists():
            raise BenchmarkError(f"{bench_file}: no such file")
        try:
            read = read_rows(bench_file, kinds=_kinds(kind, columns or {}), keep_bad=keep_bad)
        except ValueError as e:
            raise BenchmarkError(str(e)) from None
        table, name, input_rows, bad = read.table, bench_file, read.rows, read.bad
    if kind not in KINDS:
        raise BenchmarkError(f"unknown format {kind!r}; formats are {', '.join(KINDS)}")
    bench_rows = _load(table, name, kind, columns, input_rows)
    if bench_file is not None:
        bench_rows.bad_rows = bad
    return bench_rows


def _load(table: pa.Table, name: str, kind: str, columns: dict | None, input_rows) -> Benchmark:
    """The benchmark of a table; ``input_rows``: the file's row of each table row (None: the same)."""
    at = (lambda i: i) if input_rows is None else (lambda i: int(input_rows[i]))
    if kind == "pairwise":
        return _pairwise(table, name, columns or {}, at)
    _need(table, name, ["prompt", "chosen", "rejected", "subset"])
    rows = table.to_pylist()
    if not rows:
        raise BenchmarkError(f"{name}: no rows")
    prompts, completions, correct, subsets, ids = [], [], [], [], []
    for i, r in enumerate(rows):
        chosen, rejected = r["chosen"], r["rejected"]
        if kind == "rewardbench-2":
            chosen, rejected = list(chosen or []), list(rejected or [])
        else:
            chosen, rejected = [chosen], [rejected]
        if not chosen or not rejected or any(not isinstance(t, str) for t in chosen + rejected):
            raise BenchmarkError(f"{name}: row {at(i)}: chosen and rejected must be non-empty text")
        prompts.append(r["prompt"])
        completions.append(chosen + rejected)
        correct.append(int(r.get("num_correct") or len(chosen)) if kind == "rewardbench-2" else 1)
        subsets.append(str(r["subset"]))
        ids.append(str(r["id"]) if r.get("id") is not None else str(at(i)))
    return Benchmark(name, kind, prompts, completions, correct, subsets, ids)


def _prompt_columns(spec: str) -> list[str]:
    """The column(s) of a pairwise set's prompt: one name, or several separated by commas."""
    return [name.strip() for name in spec.split(",")]


def _joined(row: dict, columns: list[str]):
    """A row's prompt: its one prompt column as it is, or the texts of several (an instruction and its input, as in
    Alpaca's and PandaLM's sets) joined by a blank line, the empty ones left out."""
    if len(columns) == 1:
        return row[columns[0]]
    return "\n\n".join(str(row[c]) for c in columns if row[c] not in (None, ""))


def _pairwise(table: pa.Table, name: str, columns: dict, at) -> Benchmark:
    c = {"prompt": "prompt", "a": "response_a", "b": "response_b", "label": "label", "subset": None} | columns
    prompt_columns = _prompt_columns(c["prompt"])
    _need(table, name, [*prompt_columns, c["a"], c["b"], c["label"]] + ([c["subset"]] if c["subset"] else []))
    if "input" in table.column_names and "input" not in prompt_columns and "instruction" in prompt_columns:
        held = sum(1 for v in table.column("input").to_pylist() if v not in (None, ""))
        if held:  # Alpaca's layout: the instruction works on the input (PandaLM: 832 of 999 rows)
            print(f"warning: {name}: column 'input' is not read, and {held:,} row(s) hold text there; --prompt-column "
                  f"{','.join(prompt_columns)},input joins it to the prompt", file=sys.stderr)  # fmt: skip
    if bool(c.get("a_wins")) != bool(c.get("b_wins")) or set(c.get("a_wins") or ()) & set(c.get("b_wins") or ()):
        raise BenchmarkError("--a-wins and --b-wins: give both, with no label in both")
    a_wins, b_wins = set(c.get("a_wins") or A_WINS), set(c.get("b_wins") or B_WINS)
    rows = table.to_pylist()
    labels = [_label_text(r[c["label"]]) for r in rows]
    if not c.get("a_wins") and not c.get("b_wins") and "0" in labels:
        raise BenchmarkError(
            f"{name}: column {c['label']!r} holds the label 0, and sets that number their labels from 0 disagree on "
            "what it means (Auto-J: 0 the first response better, 1 the second, 2 a tie; PandaLM: 0 a tie, 1 the "
            "first, 2 the second): say which labels mean which (skyrm eval: --a-wins 0 --b-wins 1 for "
            "Auto-J), or write them as A>B, B>A and tie"
        )
    bench = Benchmark(name, "pairwise", [], [], [], [], [])
    file_stem = re.sub(r"(\.(jsonl|json|parquet))?(\.gz)?$", "", Path(name).name)  # pairs.jsonl.gz: pairs
    for i, (r, label) in enumerate(zip(rows, labels, strict=True)):
        if label in a_wins:
            better, worse = r[c["a"]], r[c["b"]]
        elif label in b_wins:
            better, worse = r[c["b"]], r[c["a"]]
        else:  # a tie or no label: not a pair
            bench.skipped += 1
            bench.skipped_labels[label] = bench.skipped_labels.get(label, 0) + 1
            continue
        bench.prompts.append(_joined(r, prompt_columns))
        bench.completions.append([better, worse])
        bench.num_correct.append(1)
        bench.subsets.append(str(r[c["subset"]]) if c["subset"] else file_stem)
        bench.ids.append(str(at(i)))
    if not len(bench):
        raise BenchmarkError(f"{name}: no row has a label saying which response is better "
                             f"({bench.skipped} ties or unknown labels)")  # fmt: skip
    return bench


def _label_text(value) -> str:
    """A pairwise label as text: numbers without a fraction as integers (a label column read as floats gives 1.0),
    a missing one as ``(no label)``."""
    if value is None:
        return "(no label)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class Encoder:
    """Token ids of a (prompt, response) as the official runner formats them (see the module docstring)."""

    def __init__(self, tokenizer, bos: str = "single", max_length: int | None = None) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise BenchmarkError("the tokenizer has no chat template; set one (tokenizer.chat_template) first")
        if bos not in ("single", "official"):
            raise ValueError(f"bos must be single or official, got {bos!r}")
        from skyrm.data import chat_encoder

        self.tokenizer, self.bos, self.max_length = tokenizer, bos, max_length
        self.single = chat_encoder(tokenizer)  # the training encoding: exactly one BOS

    @staticmethod
    def messages(prompt, response: str) -> list[dict]:
        """A prompt (a string, or turns) and the response as a conversation. Turns keep their own roles (a system
        turn stays one, as training and ``skyrm score`` read it); turns without a role alternate user / assistant,
        as the official code reads a conversation (RewardBench's own turns alternate, so both readings agree)."""
        if isinstance(prompt, list):
            turns = [{"role": m.get("role") or ("user" if i % 2 == 0 else "assistant"), "content": m["content"]}
                     if isinstance(m, dict) else {"role": "user" if i % 2 == 0 else "assistant", "content": m}
                     for i, m in enumerate(prompt)]  # fmt: skip
            return [*turns, {"role": "assistant", "content": response}]
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]

    def __call__(self, prompt, response: str) -> list[int]:
        return self.conversation(self.messages(prompt, response))

    def conversation(self, messages: list[dict]) -> list[int]:
        """The ids of a whole conversation (its last message the answer scored)."""
        if self.bos == "official":
            from skyrm.data import render

            ids = self.tokenizer(render(self.tokenizer, messages))["input_ids"]
        else:
            ids = self.single(messages)
        if self.max_length is not None and len(ids) > self.max_length:  # the official runner keeps the end
            ids = ids[-self.max_length :]
        return ids


def score_sequences(model, sequences: list[list[int]], token_budget: int, pad_id: int, device, progress=True,
                    by_length: bool = True):  # fmt: skip
    """One reward per sequence (the single logit at its last token), in right-padded batches of at most
    ``token_budget`` tokens padding included (:func:`skyrm.batching.scoring_batches`), of like lengths
    (``by_length``, shortest first) or in input order; rewards come back in the input order."""
    import torch
    from tqdm.auto import tqdm

    from skyrm.batching import scoring_batches
    from skyrm.model import last_token_index, rewards

    out = [math.nan] * len(sequences)
    model.eval()
    with torch.inference_mode(), tqdm(total=len(sequences), desc="scoring", unit="seq", disable=not progress) as bar:
        for indices, batch in scoring_batches(sequences, token_budget, pad_id, by_length):
            batch = batch.to(device)
            # Right padding under causal attention: no real token attends to a later pad, so the batch needs no mask
            # (the attention kernel's causal path; the same rewards); the mask only says where each row ends.
            ends = (torch.arange(len(indices), device=device), last_token_index(batch.attention_mask))
            values = rewards(model, batch.input_ids, None, ends=ends).float().cpu().tolist()
            for i, v in zip(indices, values, strict=True):
                out[i] = v
            bar.update(len(indices))
    return out


def per_example(bench: Benchmark, scores: list[float]) -> list[dict]:
    """The per-example records: id, subset, and the rewards (``chosen`` / ``rejected`` for pairs, ``scores`` with
    ``num_correct`` for best-of-n rows)."""
    records, at = [], 0
    for i in range(len(bench)):
        n = len(bench.completions[i])
        row = scores[at : at + n]
        at += n
        record = {"id": bench.ids[i], "subset": bench.subsets[i]}
        if bench.kind == "rewardbench-2":
            record |= {"num_correct": bench.num_correct[i], "scores": row}
        else:
            record |= {"chosen": row[0], "rejected": row[1]}
        records.append(record)
    return records


def table_of(records: list[dict], kind: str, xstest_weights: str = "current") -> dict:
    """Per-subset results and the sections (or the RewardBench 2 score) from per-example records."""
    by_subset: dict[str, list[dict]] = {}
    for r in records:
        by_subset.setdefault(r["subset"], []).append(r)
    subsets: dict[str, float] = {}
    counts = {s: len(rs) for s, rs in by_subset.items()}
    for subset, rs in sorted(by_subset.items()):
        if kind == "rewardbench-2" and subset.lower() == "ties":
            subsets[subset] = ties_score([(r["id"], r["num_correct"], r["scores"]) for r in rs])
        elif kind == "rewardbench-2":
            subsets[subset] = sum(best_of_n_credit(r["scores"]) for r in rs) / len(rs)
        else:
            subsets[subset] = sum(pair_correct(r["chosen"], r["rejected"]) for r in rs) / len(rs)
    out = {"subsets": subsets, "counts": counts}
    if kind == "rewardbench" and any(s in EXAMPLE_COUNTS for s in subsets):  # some of RewardBench's subsets
        out["sections"] = section_scores(subsets, xstest_weights)
    elif kind == "rewardbench-2" and all(s in subsets for s in RB2_SUBSETS):
        out["sections"] = {"Score": rb2_score(subsets)}
    elif kind == "rewardbench-2":  # no overall score without all six subsets: say so rather than guess
        out["sections"] = {"Mean of the subsets present (not the Score)": sum(subsets.values()) / len(subsets)}
    else:
        out["sections"] = {"Accuracy": sum(pair_correct(r["chosen"], r["rejected"]) for r in records) / len(records)}
    return out


def results_json(model_name: str, table: dict, kind: str, skipped: int = 0, bad_rows: int = 0) -> dict:
    """The official results layout (model, model_type, chat_template, one key per subset) plus the sections."""
    out = {"model": model_name, "model_type": "Seq. Classifier", "chat_template": "tokenizer", "benchmark": kind}
    out |= table["subsets"]
    out["sections"] = table["sections"]
    out["counts"] = table["counts"]
    if skipped:
        out["skipped_ties"] = skipped
    if bad_rows:
        out["bad_rows"] = bad_rows
    return out


def examples_path(out: Path) -> Path:
    """The per-example file written beside ``out``: ``results.json`` -> ``results.examples.jsonl``."""
    return Path(out).with_suffix(".examples.jsonl")


def results_files(out: Path, model_name: str, table: dict, kind: str, records: list[dict] | None = None,
                  bos: str = "single", skipped: int = 0, bad_rows: int = 0) -> dict[Path, str]:  # fmt: skip
    """The text of ``out`` (the results layout of :func:`results_json`) and, given the records,
    ``<out>.examples.jsonl`` beside it: a header line (model, kind, bos), then one line per example, which
    :func:`rescore` reads."""
    files = {}
    if records is not None:
        header = {"model": model_name, "kind": kind, "bos": bos, "examples": len(records)}
        files[examples_path(out)] = "".join(json.dumps(r) + "\n" for r in [header, *records])
    files[Path(out)] = json.dumps(results_json(model_name, table, kind, skipped, bad_rows), indent=2) + "\n"
    return files


def write_results(out: Path, model_name: str, table: dict, kind: str, records: list[dict] | None = None,
                  bos: str = "single", skipped: int = 0, bad_rows: int = 0) -> None:  # fmt: skip
    """Writes :func:`results_files`; both files appear together, or neither (:class:`skyshared.outputs.Staged`)."""
    with Staged() as staged:
        for path, text in results_files(out, model_name, table, kind, records, bos, skipped, bad_rows).items():
            staged.write_text(path, text)


def sections_without_rows(table: dict) -> list[str]:
    """The RewardBench sections of which a run scored no subset (a partial run: ``--limit``, a file of some
    subsets): their score is 0 in the official layout, and the Score counts them so."""
    if "Score" not in table["sections"] or not set(SECTIONS) <= set(table["sections"]):
        return []
    return [s for s, subsets in SECTIONS.items() if not any(table["counts"].get(x) for x in subsets)]


def format_table(table: dict) -> str:
    """The terminal table: sections (``n/a`` where no row was scored), then each subset with its rows."""
    missing = sections_without_rows(table)
    lines = [f"{'':<28}{'score':>8}{'rows':>7}"]
    for name, value in table["sections"].items():
        rows = sum(table["counts"].get(x, 0) for x in SECTIONS[name]) if name in SECTIONS else None
        lines.append(f"{name:<28}{'n/a' if name in missing else f'{100 * value:.2f}':>8}"
                     + (f"{rows:7d}" if rows is not None else ""))  # fmt: skip
    if missing:
        lines.append(f"(partial: no rows of {', '.join(missing)}; the Score counts them as 0, as the official code "
                     "does, and does not compare with published scores)")  # fmt: skip
    lines.append("")
    for subset, value in table["subsets"].items():
        lines.append(f"  {subset:<26}{100 * value:8.2f}{table['counts'][subset]:7d}")
    return "\n".join(lines)


def comparison_markdown(model_name: str, table: dict) -> str:
    """A markdown table of this model's RewardBench sections among the published leaderboard rows
    (``skyrm/eval/published.json``), ranked by Score."""
    from importlib import resources

    published = json.loads(resources.files("skyrm.eval").joinpath("published.json").read_text(encoding="utf-8"))
    keys = ("Score", "Chat", "Chat Hard", "Safety", "Reasoning")
    if not all(k in table["sections"] for k in keys):
        raise BenchmarkError("the comparison needs RewardBench v1 section scores (--bench rewardbench)")
    missing = sections_without_rows(table)
    ours = {"model": f"**{model_name}** (this run{', partial' if missing else ''})",
            **{k: "n/a" if k in missing else 100 * table["sections"][k] for k in keys}}  # fmt: skip
    rows = sorted([*published["rows"], ours], key=lambda r: -r["Score"])
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {r['model']} | " + " | ".join(_cell(r[k]) for k in keys) + " |" for r in rows]
    note = (f"\n\nThis run scored no subset of {', '.join(missing)}: its Score (the mean of the four sections, "
            "those counted as 0) is not comparable with the published rows." if missing else "")  # fmt: skip
    return "\n".join(lines) + note + f"\n\nPublished rows: {published['source']}.\n"


def _cell(value) -> str:
    return value if isinstance(value, str) else f"{value:.2f}"


def load_model(name: str, trust_remote_code: bool = False):
    """A one-label reward model and its tokenizer for scoring: a folder, a hub id, ``smollm2`` or ``tiny``; bf16 on
    the GPU (this process's LOCAL_RANK under torchrun), else fp32 on the CPU with a warning. The pad token is the one
    :mod:`skyrm.padding` chooses (never one that ends a sequence), in the tokenizer and the model's config. A model
    that ships its own code is refused unless ``trust_remote_code`` (:func:`skyrm.requires.pretrained`)."""
    import os
    import sys

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from skyrm.padding import pad_model
    from skyrm.requires import pretrained
    from skyrm.smollm2 import SMOLLM2, packaged_smollm2

    if name == TINY:
        return _tiny_model()
    kwargs, head = {"trust_remote_code": trust_remote_code}, {}
    if name == SMOLLM2:
        name, extra = packaged_smollm2()
        kwargs |= extra
        head["num_labels"] = 1  # a language model: a new one-label score head (from seed 0, below)
        print("warning: --model smollm2 is a chat model, not a reward model: its score head is new and untrained "
              "(seed 0), so its rewards rank pairs by chance; score a trained one (a training run's model/ folder, "
              "e.g. of skyrm train --model smollm2)", file=sys.stderr)  # fmt: skip
    cuda = torch.cuda.is_available()
    if not cuda:
        print("warning: no CUDA GPU found, so the model runs on the CPU in fp32: fine for small models, slow for "
              "real ones", file=sys.stderr)  # fmt: skip
    dtype = torch.bfloat16 if cuda else torch.float32
    tokenizer = pretrained(AutoTokenizer.from_pretrained, name, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # weights the checkpoint lacks (a new head) are the same in every process
        model = pretrained(AutoModelForSequenceClassification.from_pretrained, name, dtype=dtype, **kwargs, **head)
    pad_model(model, tokenizer)
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    return model.to(device), tokenizer


#: ``--model tiny``: the built-in random-init model (seed 0), for tests and demos.
TINY = "tiny"


def _tiny_model():
    """The built-in tiny reward model with the random init of seed 0, on the CPU in fp32, and its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from skyrm.model import tiny_config, tiny_tokenizer
    from skyrm.padding import pad_model

    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(tiny_config(), dtype=torch.float32)
    pad_model(model, tokenizer)
    return model, tokenizer


def encode_benchmark(encode: Encoder, bench: Benchmark) -> list[list[int]]:
    """The token ids of every completion of every row, in order. Every row counts in the accuracy: one the chat
    template refuses (a system turn under Gemma's) is a :class:`BenchmarkError` naming it, not a row left out."""
    sequences = []
    for row, (prompt, completions) in enumerate(zip(bench.prompts, bench.completions, strict=True)):
        try:
            sequences += [encode(prompt, c) for c in completions]
        except ValueError as e:
            raise BenchmarkError(f"{bench.name}: example {bench.ids[row]} (subset {bench.subsets[row]}): {e}") from None
    return sequences


def evaluate(model, tokenizer, bench: Benchmark, *, token_budget: int = 16_384, bos: str = "single",
             max_length: int | None = None, device=None, progress: bool = True) -> list[dict]:  # fmt: skip
    """Per-example records of ``model`` on ``bench``. Under torchrun every process scores its share of the
    sequences (data parallel: each holds the whole model) and every process gets all the records."""
    if getattr(model.config, "num_labels", 1) != 1:
        raise BenchmarkError(f"the model has {model.config.num_labels} labels; a reward model has exactly one "
                             "(load it as ...ForSequenceClassification with num_labels=1)")  # fmt: skip
    sequences = encode_benchmark(Encoder(tokenizer, bos, max_length), bench)
    longest = max(len(s) for s in sequences)
    budget = max(token_budget, longest)
    from skyrm.padding import pad_model

    pad_id = pad_model(model, tokenizer)  # as load_model set it; the policy's own pad for a model loaded otherwise
    device = device or next(model.parameters()).device
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return per_example(bench, score_sequences(model, sequences, budget, pad_id, device, progress))
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = list(range(rank, len(sequences), world))
    scores = score_sequences(model, [sequences[i] for i in mine], budget, pad_id, device, progress and rank == 0)
    gathered: list = [None] * world
    dist.all_gather_object(gathered, (mine, scores))
    merged = [math.nan] * len(sequences)
    for indices, values in gathered:
        for i, v in zip(indices, values, strict=True):
            merged[i] = v
    return per_example(bench, merged)


def rescore(path: str) -> tuple[list[dict], str, str]:
    """Per-example records, the benchmark kind and the model's name from a per-example file written by ``--out``;
    a file that is not one, is cut short or has a broken line is one error naming it (and the line)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines:
        raise BenchmarkError(f"{path}: empty")
    values = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == 1 and line.lstrip().startswith("{") and not line.rstrip().endswith("}"):
                raise BenchmarkError(f"{path}: a JSON document, not a per-example file of skyrm.eval (--out "
                                     "writes one beside its results, NAME.examples.jsonl)") from None  # fmt: skip
            raise BenchmarkError(f"{path}:{number}: not a JSON line ({e.msg}); the file is cut short or "
                                 "damaged") from None  # fmt: skip
    header, records = values[0], values[1:]
    if not isinstance(header, dict) or "kind" not in header:
        raise BenchmarkError(f"{path}: not a per-example file of skyrm.eval (no header line)")
    if header.get("examples", len(records)) != len(records):
        raise BenchmarkError(f"{path}: {len(records):,} examples where its header says {header['examples']:,}; the "
                             "file is cut short")  # fmt: skip
    return records, header["kind"], header.get("model", "")
