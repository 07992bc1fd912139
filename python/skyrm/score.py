"""``skyrm score``: a reward model's scores for every pair (or every response) of a pool, for the recipe's stages
that read reward-model scores (WildGuardMix stage 2, Magpie-style ranking) and for ``skyfilter select``.

What is scored: each pair's chosen and rejected conversation (any layout :func:`skyrm.data.conversations` reads:
whole conversations, or a prompt with string or message-list answers), or with ``responses=COLUMN`` each response
of a row's list (the Magpie layout: ``instruction`` and five ``responses``), the prompt from ``prompt_column``.
Each conversation is encoded as :class:`skyrm.eval.runner.Encoder` encodes it (the chat template, exactly one
BOS, the end kept when over ``max_length``) and scored as ``skyrm.eval`` scores (:func:`score_sequences`:
length-sorted batches under a token budget, the reward read at the last token), so the same row gets the same
reward in both.

Output (parquet): ``source`` and ``source_row`` when the input has them (skyfilter's curated pools do), always
``input_row`` (the 0-based row of the input), then ``rm_chosen``, ``rm_rejected`` and ``rm_margin`` (chosen minus
rejected), or ``rm_scores`` (a list per row) for responses; with ``keep_input`` the input's own columns come first.
A row without a scorable conversation (a missing answer) gets null scores, counted in the summary. The parquet
metadata names the model (``skyrm.model``) and a SHA-256 of its weights as loaded (``skyrm.model_sha256``).

Resuming: the rows are scored in shards of ``shard_rows`` rows, each written whole into a work folder beside the
output (``.NAME.partial/``) with the run's settings (input, model hash, options); a run that finds that folder
with the same settings scores only the shards that are missing, and the output appears (all at once) when every
shard is there; then the work folder goes. The folder appears whole with its settings and goes at once (renamed,
then removed), so a run killed at any moment leaves one that a rerun resumes from, or a temporary one that it
removes; the run that writes it holds its lock, and a second run on the same output stops at once. Processes: under
``torchrun`` each process scores every ``world``-th shard on its own GPU and rank 0 writes the output; with
``engine="ray"`` a Ray Data pool of actors (one GPU each where there are GPUs) scores the shards, each actor loading
the model once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from skyshared.outputs import (
    OutputError,
    Staged,
    check_outputs,
    lock_folder,
    remove_stale,
    temporary_name,
    writing,
)

from skyrm.data import DROP_REMEDIES, PAIR_KINDS, Rows, TemplateRefusal, answer_problem, conversations, read_rows

__all__ = ["ScoreOptions", "ScoreError", "score_pool", "weights_sha256", "SCORE_COLUMNS", "work_folder"]

#: The score columns of a pair's row.
SCORE_COLUMNS = ("rm_chosen", "rm_rejected", "rm_margin")
#: The score column of a multi-response row.
RESPONSES_COLUMN = "rm_scores"
IDENTITY_COLUMNS = ("source", "source_row")


class ScoreError(ValueError):
    """A scoring run that cannot start or go on; one line naming the file and what is wrong."""


@dataclass(frozen=True)
class ScoreOptions:
    """How the rows are scored: ``responses`` (a list column: score each response; None: pairs), the prompt
    column for responses (default ``instruction``, else ``prompt``), the token budget of a batch (padding
    included), the longest sequence (None: the model's ``max_position_embeddings``), rows per shard (the unit of
    resuming), and whether the input's columns are copied into the output."""

    responses: str | None = None
    prompt_column: str | None = None
    token_budget: int = 16_384
    max_length: int | None = None
    shard_rows: int = 4_096
    keep_input: bool = False

    def __post_init__(self) -> None:
        for value, least, flag in ((self.token_budget, 1, "--batch-tokens"), (self.shard_rows, 1, "--shard-rows"),
                                   (self.max_length, 2, "--max-length")):  # fmt: skip
            if value is not None and value < least:
                raise ScoreError(f"{flag} must be at least {least}, got {value}")


def work_folder(out: str | os.PathLike) -> Path:
    """Where the shards of a run writing ``out`` wait: ``.NAME.partial`` beside it."""
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


def weights_sha256(model) -> str:
    """A SHA-256 of the model's weights as loaded (names, dtypes, shapes and bytes, in name order): two files that
    load to the same weights have the same hash."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- rows


def _messages(prompt, response) -> list[dict] | None:
    if response is None or (isinstance(response, str) and not response):
        return None
    head = [] if prompt is None else [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    head = [{"role": m["role"], "content": m["content"]} for m in head]
    tail = [{"role": "assistant", "content": response}] if isinstance(response, str) else response
    return head + [{"role": m["role"], "content": m["content"]} for m in tail]


def _conversations(table: pa.Table, options: ScoreOptions) -> list[list[list[dict] | None]]:
    """Per row, the conversations to score (None: nothing to score there)."""
    if options.responses is None:
        chosen, rejected = conversations(table)

        def scorable(c: list[dict]) -> list[dict] | None:
            return None if answer_problem(c) else c  # as training reads pairs

        return [[scorable(c), scorable(r)] for c, r in zip(chosen, rejected, strict=True)]
    prompt = _prompt_column(table.schema.names, options)
    rows = []
    for p, responses in zip(table.column(prompt).to_pylist(), table.column(options.responses).to_pylist(),
                            strict=True):  # fmt: skip
        rows.append([_messages(p, r) for r in responses or []])
    return rows


def _prompt_column(names: list[str], options: ScoreOptions) -> str | None:
    return options.prompt_column or next((c for c in ("instruction", "prompt") if c in names), None)


def _kinds(options: ScoreOptions) -> dict[str, tuple[str, ...]]:
    if options.responses is None:
        return PAIR_KINDS
    prompt = options.prompt_column or "instruction"
    return {prompt: ("string", "message list"), options.responses: ("list",)}


def _read(spec: str, options: ScoreOptions) -> Rows:
    try:
        rows = read_rows(spec, kinds=_kinds(options), set_apart_by=None)  # no --bad-rows: a row unread is an error
    except ValueError as e:
        raise ScoreError(str(e)) from None
    names = rows.table.schema.names
    if options.responses is None and not {"chosen", "rejected"} <= set(names):
        raise ScoreError(f"{spec}: pairs need `chosen` and `rejected` columns (or give --responses COLUMN); the "
                         f"columns are {names}")  # fmt: skip
    if options.responses is not None:
        if options.responses not in names:
            raise ScoreError(f"{spec}: no column {options.responses!r} (--responses); the columns are {names}")
        prompt = _prompt_column(names, options)
        if prompt is None or prompt not in names:
            raise ScoreError(f"{spec}: no prompt column {prompt!r} for --responses (give --prompt-column); the "
                             f"columns are {names}")  # fmt: skip
        kind = rows.table.schema.field(options.responses).type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not pa.types.is_string(kind.value_type):
            raise ScoreError(f"{spec}: column {options.responses!r} (--responses) must hold lists of response texts, "
                             f"not {kind}")  # fmt: skip
    clash = [c for c in (*SCORE_COLUMNS, RESPONSES_COLUMN, "input_row") if c in names]
    if options.keep_input and clash:
        raise ScoreError(f"{spec}: already has column(s) {clash}, which skyrm score writes; rename them first")
    return rows


def _input_rows(rows: Rows) -> np.ndarray:
    return np.arange(rows.table.num_rows, dtype=np.int64) if rows.rows is None else np.asarray(rows.rows, np.int64)


# ----------------------------------------------------------------------------------------------- shards


class _Scorer:
    """A loaded model scoring shards of rows into tables (one per shard)."""

    def __init__(self, model_name: str, options: ScoreOptions, loaded=None, trust_remote_code: bool = False):
        from skyrm.eval.runner import Encoder, load_model
        from skyrm.padding import pad_model

        self.model, self.tokenizer = loaded or load_model(model_name, trust_remote_code)
        limit = options.max_length or getattr(self.model.config, "max_position_embeddings", None)
        self.encode = Encoder(self.tokenizer, "single", limit)
        self.pad_id = pad_model(self.model, self.tokenizer)
        self.options = options
        self.device = next(self.model.parameters()).device
        self.digest = weights_sha256(self.model)

    def __call__(self, table: pa.Table, input_rows: np.ndarray) -> pa.Table:
        """The scores of a shard: its rows and their rows in the input."""
        from skyrm.eval.runner import score_sequences

        items = _conversations(table, self.options)
        sequences, where, refused = [], [], []
        for r, convs in enumerate(items):
            for k, messages in enumerate(convs):
                if messages is not None:
                    try:
                        sequences.append(self.encode.conversation(messages))
                    except TemplateRefusal:  # a null score, counted by its reason
                        refused.append(int(input_rows[r]))
                        continue
                    where.append((r, k))
        budget = max([self.options.token_budget, *(len(s) for s in sequences)])
        scores = score_sequences(self.model, sequences, budget, self.pad_id, self.device, progress=False)
        values: list[list[float | None]] = [[None] * len(convs) for convs in items]
        for (r, k), v in zip(where, scores, strict=True):
            values[r][k] = float(v)
        shard = _shard_table(table, input_rows, values, self.options)
        return shard.replace_schema_metadata({_REFUSED: json.dumps(refused)})


def _shard_table(table: pa.Table, input_rows: np.ndarray, values: list, options: ScoreOptions) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    if options.keep_input:
        columns |= {name: table.column(name) for name in table.schema.names}
    else:
        columns |= {c: table.column(c) for c in IDENTITY_COLUMNS if c in table.schema.names}
    columns["input_row"] = pa.array(np.asarray(input_rows, dtype=np.int64))
    if options.responses is not None:
        columns[RESPONSES_COLUMN] = pa.array(values, pa.list_(pa.float64()))
    else:
        chosen = np.array([v[0] if v[0] is not None else np.nan for v in values], dtype=np.float64)
        rejected = np.array([v[1] if v[1] is not None else np.nan for v in values], dtype=np.float64)
        columns["rm_chosen"] = pa.array(chosen, mask=np.isnan(chosen))
        columns["rm_rejected"] = pa.array(rejected, mask=np.isnan(rejected))
        margin = chosen - rejected
        columns["rm_margin"] = pa.array(margin, mask=np.isnan(margin))
    return pa.table(columns)


def _write_shard(folder: Path, index: int, table: pa.Table, digest: str) -> None:
    """A shard, written whole (a temporary name, then renamed), with the hash of the weights that scored it."""
    target = folder / f"shard-{index:06d}.parquet"
    tmp = temporary_name(target)
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), _DIGEST.encode(): digest}), tmp)
    os.replace(tmp, target)


_DIGEST = "skyrm.model_sha256"
#: A shard's input rows with a conversation the chat template refused (once for each such conversation).
_REFUSED = "skyrm.template_refused"


def _done(folder: Path) -> set[int]:
    return {int(p.stem.split("-")[1]) for p in folder.glob("shard-*.parquet")}


def _settings(spec: str, model_name: str, options: ScoreOptions, n_rows: int) -> dict:
    """What a resumed run must share with the run that wrote the shards (the weights are checked at the end: each
    shard names the hash of the weights that scored it)."""
    path = Path(spec)
    stat = path.stat() if path.is_file() else None
    fingerprint = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns} if stat else None
    # the batch size changes no score: a run may resume with another one
    kept = {k: v for k, v in asdict(options).items() if k != "token_budget"}
    return {"input": str(path.resolve()) if path.exists() else spec, "input_file": fingerprint, "rows": n_rows,
            "model": model_name, "options": kept}  # fmt: skip


def _differences(earlier: dict | None, now: dict) -> str:
    """The settings that differ between an earlier run's and this one's, as ``key: then, now``."""
    if not isinstance(earlier, dict):
        return "its settings.json cannot be read"
    flat = lambda d: {**{k: v for k, v in d.items() if k != "options"}, **d.get("options", {})}  # noqa: E731
    then, here = flat(earlier), flat(now)
    return "; ".join(f"{k}: {then.get(k)!r} then, {here.get(k)!r} now" for k in dict.fromkeys([*then, *here])
                     if then.get(k) != here.get(k))  # fmt: skip


def _open_work(folder: Path, settings: dict, log, out: Path) -> tuple[set[int], int]:
    """The shards already scored by an earlier run with the same settings (a new folder otherwise), and a descriptor
    holding the folder's lock for this run (closed when the run ends, or with the process when it is killed).

    A new folder appears whole, with its settings (made under a temporary name, locked, then renamed), so a run
    killed at any moment leaves either no folder or one that a rerun resumes; a folder locked by another run is
    that run's: this one stops at once."""
    remove_stale(folder)
    if not folder.exists():
        text = json.dumps(settings, indent=2) + "\n"
        tmp = temporary_name(folder)
        tmp.mkdir(parents=True)  # --out's folder too, when it is new
        lock, renamed = None, False
        try:
            lock = _lock(tmp, out)  # held before the folder is seen: no other run takes it meanwhile
            (tmp / "settings.json").write_text(text, encoding="utf-8")
            try:
                os.rename(tmp, folder)
                renamed = True
            except OSError:  # another run's folder appeared meanwhile: that one is opened below
                pass
        finally:
            if not renamed:  # that, or an error (a full disk): no temporary folder stays
                if lock is not None:
                    os.close(lock)
                shutil.rmtree(tmp, ignore_errors=True)
        if renamed:
            return set(), lock
    lock = _lock(folder, out)
    try:
        earlier = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if earlier != settings:
        os.close(lock)
        raise ScoreError(
            f"{folder}: the shards of an earlier run with other settings ({_differences(earlier, settings)}); delete "
            "that folder to start over, or run with the same settings to resume"
        )
    done = _done(folder)
    log(f"resuming: {len(done):,} shards of an earlier run found in {folder}")
    return done, lock


def _lock(folder: Path, out: Path) -> int:
    """An exclusive lock on the work folder, or a ScoreError when another run holds it."""
    try:
        return lock_folder(folder, wait=False)
    except BlockingIOError:
        raise ScoreError(f"{out}: another skyrm score run is writing it now (its work folder {folder} is locked); "
                         "wait for it to end, or give another --out") from None  # fmt: skip


def _remove_work(folder: Path) -> None:
    """The work folder goes at once (renamed, then removed): a run killed meanwhile leaves a temporary folder, which
    the next run removes, never a folder without its settings."""
    gone = temporary_name(folder)
    os.rename(folder, gone)
    shutil.rmtree(gone, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- run


def score_pool(
    spec: str | os.PathLike,
    model_name: str | os.PathLike,
    out: str | os.PathLike,
    options: ScoreOptions = ScoreOptions(),
    *,
    engine: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
    log=None,
    trust_remote_code: bool = False,
) -> dict:
    """Scores every row of ``spec`` with ``model_name`` into the parquet file ``out`` (see the module docstring);
    returns the run's summary (rows, scored conversations, unscored ones, pairs the model ranks correctly). A model
    that ships its own code is refused unless ``trust_remote_code`` (not a setting of the run: it changes no score)."""
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    for what, value, wanted in (("input", spec, "a file, a folder or a hub dataset id (write a table to parquet "
                                 "first)"), ("model", model_name, "a folder, a hub id, tiny or smollm2")):  # fmt: skip
        if not isinstance(value, (str, os.PathLike)):
            raise ScoreError(f"the {what} must be {wanted}, not a {type(value).__name__}")
    spec, model_name, out = os.fspath(spec), os.fspath(model_name), Path(out)
    if out.suffix.lower() != ".parquet":
        raise ScoreError(f"{out}: --out must be a .parquet file")
    try:
        check_outputs({"--out": out}, [spec])
    except OutputError as e:
        raise ScoreError(str(e)) from None
    if engine not in ("local", "ray"):
        raise ScoreError(f"engine must be local or ray, got {engine!r}")
    rows = _read(spec, options)
    if options.responses is None:
        _refuse_unscorable(rows)
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and engine == "local"
    runtime = None
    if distributed:
        from skyrm.distributed import start

        runtime = start()
    lock = None  # the work folder's lock, held by the process that writes the output
    completed = False
    try:
        folder = work_folder(out)
        settings = _settings(spec, model_name, options, rows.table.num_rows)
        shards = [(i, a, min(a + options.shard_rows, rows.table.num_rows))
                  for i, a in enumerate(range(0, rows.table.num_rows, options.shard_rows))]  # fmt: skip
        main = runtime is None or runtime.main
        done, lock = _shared_work(folder, settings, say, runtime, out)  # before the model loads: fails at once
        todo = [s for s in shards if s[0] not in done]
        scorer = _Scorer(model_name, options, trust_remote_code=trust_remote_code) if engine == "local" else None
        if engine == "ray":
            _score_on_ray(rows, model_name, options, folder, todo, ray_address, progress, trust_remote_code)
        else:
            mine = todo if runtime is None else todo[runtime.rank :: runtime.world]
            _score_here(scorer, rows, folder, mine, sum(b - a for _, a, b in mine), progress and main, out)
        if runtime is not None:
            import torch.distributed as dist

            dist.barrier()
        result = _finish(rows, folder, out, len(shards), model_name, options, say) if main else {}
        completed = True
        return result
    finally:
        if lock is not None:
            if not completed and folder.is_dir() and not _done(folder):
                _remove_work(folder)  # nothing scored (a model that does not load): nothing to resume or refuse
            os.close(lock)
        if runtime is not None:
            from skyrm.distributed import stop

            stop(runtime, completed)


def _refuse_unscorable(rows: Rows, piece: int = 4096) -> None:
    """A ScoreError, before the model loads, for an input none of whose pairs can be scored (HH-RLHF transcripts not
    yet converted: training drops them all); read a piece at a time, so a good input costs its first piece."""
    why: Counter = Counter()
    if not rows.table.num_rows:
        return
    for start in range(0, rows.table.num_rows, piece):
        chosen, rejected = conversations(rows.table.slice(start, piece))
        problems = [answer_problem(c) or answer_problem(r) for c, r in zip(chosen, rejected, strict=True)]
        if not all(problems):
            return
        why.update(problems)
    reasons = ", ".join(f"{n:,} {reason} ({DROP_REMEDIES[reason]})" for reason, n in why.items())
    raise ScoreError(f"{rows.name}: none of its {rows.table.num_rows:,} pairs can be scored, as training would drop "
                     f"them all: {reasons}")  # fmt: skip


def _shared_work(folder: Path, settings: dict, say, runtime, out: Path) -> tuple[set[int], int | None]:
    """:func:`_open_work` on rank 0 (which holds the folder's lock), its answer (the shards done, or its error) given
    to every process."""
    if runtime is None:
        return _open_work(folder, settings, say, out)
    import torch.distributed as dist

    answer: list = [None]
    lock = None
    if runtime.main:
        try:
            done, lock = _open_work(folder, settings, say, out)
            answer = [sorted(done)]
        except ScoreError as e:
            answer = [str(e)]
    dist.broadcast_object_list(answer, src=0)
    if isinstance(answer[0], str):
        raise ScoreError(answer[0])
    return set(answer[0]), lock


def _score_here(scorer: _Scorer, rows: Rows, folder: Path, shards: list, total: int, progress: bool,
                out: Path) -> None:  # fmt: skip
    from tqdm.auto import tqdm

    numbers = _input_rows(rows)
    with tqdm(total=total, desc="scoring", unit="rows", unit_scale=True, disable=not progress) as bar:
        for index, start, stop in shards:
            table = scorer(rows.table.slice(start, stop - start), numbers[start:stop])
            with writing(out, "--out"):  # a full disk: one line naming the output (the shards so far are kept)
                _write_shard(folder, index, table, scorer.digest)
            bar.update(stop - start)


def _finish(rows: Rows, folder: Path, out: Path, n_shards: int, model_name: str, options: ScoreOptions,
            say) -> dict:  # fmt: skip
    """Every shard there, all scored by the same weights: the output, written whole with the model in its metadata;
    the work folder goes."""
    found = _done(folder)
    if found != set(range(n_shards)):
        raise ScoreError(f"{folder}: {n_shards - len(found & set(range(n_shards)))} shards are missing after scoring")
    shards = [pq.read_table(folder / f"shard-{i:06d}.parquet") for i in range(n_shards)]
    digests = {t.schema.metadata[_DIGEST.encode()].decode() for t in shards}
    if len(digests) != 1:
        raise ScoreError(
            f"{folder}: its shards were scored by different weights of {model_name} (the model changed between an "
            "interrupted run and this one); delete that folder and score again"
        )
    digest = digests.pop()
    refused = [row for t in shards for row in json.loads(t.schema.metadata.get(_REFUSED.encode(), b"[]"))]
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in shards])
    if table.num_rows != rows.table.num_rows:
        raise ScoreError(f"{folder}: {table.num_rows:,} rows scored where the input has {rows.table.num_rows:,}")
    metadata = {"skyrm.model": model_name, _DIGEST: digest, "skyrm.input": str(rows.name),
                "skyrm.options": json.dumps(asdict(options))}  # fmt: skip
    table = table.replace_schema_metadata(metadata)
    with Staged() as staged, writing(out, "--out"):
        pq.write_table(table, staged.path(out))
    _remove_work(folder)
    summary = _summary(table, options, rows.table, refused)
    summary |= {"out": str(out), "model": model_name, "model_sha256": digest}
    say(_describe(summary))
    return summary


def _summary(table: pa.Table, options: ScoreOptions, read: pa.Table, refused: list[int]) -> dict:
    """Rows, scored and unscored (pairs: by the reason training would drop them, from the rows ``read``, or as the
    chat template ``refused`` them: their input rows)."""
    if options.responses is not None:
        lists = table.column(RESPONSES_COLUMN).to_pylist()
        scored = sum(v is not None for row in lists for v in row)
        unscored = sum(v is None for row in lists for v in row)
        return {"rows": table.num_rows, "scored": scored, "unscored": unscored, "template_refused": len(refused)}
    margin = table.column("rm_margin").to_numpy(zero_copy_only=False)
    known = margin[~np.isnan(margin)]
    unscored = np.flatnonzero(np.isnan(margin))
    chosen, rejected = conversations(read.take(pa.array(unscored)))
    refused_rows = set(refused)
    input_rows = table.column("input_row").to_numpy()[unscored]
    why = Counter(answer_problem(c) or answer_problem(r) or ("template_refused" if i in refused_rows else "nan_score")
                  for c, r, i in zip(chosen, rejected, input_rows.tolist(), strict=True))  # fmt: skip
    return {"rows": table.num_rows, "scored_pairs": int(len(known)), "unscored_pairs": int(len(margin) - len(known)),
            "unscored_reasons": dict(why), "ranked_correctly": int((known > 0).sum()),
            "accuracy": float((known > 0).mean()) if len(known) else math.nan}  # fmt: skip


def _describe(summary: dict) -> str:
    if "scored_pairs" in summary:
        line = f"scored {summary['scored_pairs']:,} of {summary['rows']:,} pairs"
        if summary["scored_pairs"]:
            line += (f"; the model ranks {summary['ranked_correctly']:,} of them correctly "
                     f"({summary['accuracy']:.3f})")  # fmt: skip
        if summary["unscored_pairs"]:
            reasons = ", ".join(f"{n:,} {why} ({DROP_REMEDIES.get(why, 'the model gave NaN')})"
                                for why, n in summary["unscored_reasons"].items())  # fmt: skip
            line += f"; {summary['unscored_pairs']:,} pairs have null scores: {reasons}"
    else:
        line = f"scored {summary['scored']:,} responses of {summary['rows']:,} rows"
        empty = summary["unscored"] - summary["template_refused"]
        if empty:
            line += f"; {empty:,} empty responses have null scores"
        if summary["template_refused"]:
            line += (f"; {summary['template_refused']:,} responses have null scores: "
                     f"{DROP_REMEDIES['template_refused']}")  # fmt: skip
    return f"{line}; wrote {summary['out']}"


# ----------------------------------------------------------------------------------------------- ray


#: The columns a shard's rows carry through Ray Data: its number and the rows' numbers in the input.
_SHARD, _ROW = "__skyrm_shard", "__skyrm_input_row"


class _ShardActor:
    """A Ray Data actor: loads the model once, then scores each shard it is given (a block of the input's rows with
    their shard and input row numbers) and writes it."""

    def __init__(self, model_name: str, options: ScoreOptions, folder: str, trust_remote_code: bool):
        self.scorer = _Scorer(model_name, options, trust_remote_code=trust_remote_code)
        self.folder = Path(folder)

    def __call__(self, block: pa.Table) -> dict:
        index = block[_SHARD][0].as_py()
        rows = block[_ROW].to_numpy()
        table = self.scorer(block.drop_columns([_SHARD, _ROW]), rows)
        _write_shard(self.folder, index, table, self.scorer.digest)
        return {"index": [index], "rows": [block.num_rows]}


def _score_on_ray(rows: Rows, model_name: str, options: ScoreOptions, folder: Path, shards: list,
                  address: str | None, progress: bool, trust_remote_code: bool = False) -> None:  # fmt: skip
    """The shards on a pool of Ray Data actors (the batch-inference pattern): one GPU per actor where the cluster
    has GPUs, else one CPU; as many actors as there are GPUs (or CPUs), at most one per shard."""
    from skyshared.ray_session import ray_session
    from tqdm.auto import tqdm

    if not shards:
        return
    with ray_session(address, command="skyrm score", progress=False) as ray:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actors = max(1, min(len(shards), gpus or cpus))
        numbers = _input_rows(rows)
        blocks = [
            rows.table.slice(a, b - a)
            .append_column(_SHARD, pa.array(np.full(b - a, i, dtype=np.int64)))
            .append_column(_ROW, pa.array(numbers[a:b]))
            for i, a, b in shards
        ]
        scored = ray.data.from_arrow(blocks).map_batches(
            _ShardActor,
            fn_constructor_args=(model_name, options, str(folder), trust_remote_code),
            batch_size=None,  # a block (a shard) per call
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
        )
        total = sum(b - a for _, a, b in shards)
        with tqdm(total=total, desc="scoring", unit="rows", unit_scale=True, disable=not progress) as bar:
            for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
                bar.update(int(np.sum(batch["rows"])))
