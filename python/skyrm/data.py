"""Preference pairs for training: read from parquet / jsonl / a Hugging Face dataset id, turned into the two
conversations of each pair, and tokenized with the model's chat template.

Layouts read (by column names; no Rust extension needed, so this runs where only torch, transformers and
pyarrow are installed):

* ``chosen`` and ``rejected`` as whole conversations (message lists): skyfilter's curated output and
  Skywork-Reward-Preference-80K;
* ``prompt`` plus ``chosen`` and ``rejected``, each a message list or a string (skyfilter's pair table, TRL's
  conversational and plain formats, RewardBench): the prompt turns come first.

Tokenization renders each conversation with the tokenizer's chat template and tokenizes the text without adding
special tokens, then puts one BOS in front if the tokenizer uses one and the template did not write it: never
two BOS tokens. Truncation to ``max_length`` tokens: ``"drop"`` drops pairs with a side over the limit
(``too_long``); ``"truncate"`` cuts a side over the limit from the front (:func:`truncate`): it keeps the BOS and
the last ``max_length - 1`` tokens, so the end of the prompt, the end of the answer and the template's final token,
where the reward is read, stay; pairs whose two sides are then the same tokens are dropped
(``identical_after_truncation``). Every dropped pair is counted, and :func:`drop_warning` says when a run loses
more than a tenth of its pairs, why, and which flag changes it.

An optional numeric ``margin`` column (TRL's name) gives each pair its own margin for the margin-aware losses.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import struct
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from skyshared.hub import hub_access, missing_path
from skyshared.jsonrows import BadRow, bad_rows_table, read_json_rows
from skyshared.outputs import Staged

from skyrm.requires import first_line, require

__all__ = ["TRUNCATION", "PAIR_KINDS", "EncodedPairs", "Rows", "read_rows", "read_pairs", "write_bad_rows",
           "check_bad_rows_path", "conversations", "encode_pairs", "truncate", "drop_warning"]  # fmt: skip

TRUNCATION = ("drop", "truncate")
#: The column of per-pair margins (TRL's name).
MARGIN_COLUMN = "margin"
#: A run that drops more than this share of its pairs says so (:func:`drop_warning`).
DROP_WARNING_SHARE = 0.1
#: What changes each drop reason: a flag, or what to do about the data.
DROP_REMEDIES = {
    "too_long": "raise --max-length or use --truncation truncate",
    "identical_after_truncation": "raise --max-length",
    "identical": "the chosen and rejected conversations are the same; fix the data",
    "no_answer": "the pairs need a prompt and an assistant answer; fix the data",
}


@dataclass
class Rows:
    """A file's rows as a table: its ``name``, the input row of each table row (``rows``; None: the same numbers)
    and the rows that could not be read (``bad``, set apart; see :mod:`skyshared.jsonrows`)."""

    name: str
    table: pa.Table
    rows: np.ndarray | None = None
    bad: list[BadRow] = field(default_factory=list)


#: What the pair columns may hold in a JSON file: strings or message lists.
PAIR_KINDS = dict.fromkeys(("prompt", "chosen", "rejected"), ("string", "message list"))


def read_rows(spec: str, split: str = "train", kinds: dict[str, tuple[str, ...]] | None = None,
              keep_bad: bool = False) -> Rows:  # fmt: skip
    """The one reader of skyrm (training pairs, benchmarks): a parquet, jsonl (optionally .gz) or json file, a
    dataset folder (``data/<split>-*.parquet``, as on the hub and in skyfilter curate's output), or a Hugging Face
    dataset id. In a JSON file, a row that is not an object or holds a value of a kind ``kinds`` rules out for its
    column (or unlike the column's other rows) is an error ``FILE:LINE: column 'c': ...``, or with ``keep_bad`` is
    left out and listed in ``bad``."""
    path = Path(spec)
    if path.is_dir():  # a dataset folder: data/<split>-*.parquet (the hub's layout, skyfilter curate's output)
        for pattern in (f"data/{split}-*.parquet", f"{split}-*.parquet", f"{split}.parquet"):
            files = sorted(path.glob(pattern))
            if files:
                return _nonempty(Rows(spec, pa.concat_tables([_parquet(f) for f in files], promote_options="default")))
        raise ValueError(f"{spec}: a folder without data/{split}-*.parquet, {split}-*.parquet or {split}.parquet")
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".parquet"):
            return _nonempty(Rows(spec, _parquet(path)))
        if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
            data = path.read_bytes()
            if name.endswith(".gz"):
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError) as e:
                    raise ValueError(f"{spec}: not a readable gzip file ({e})") from None
            read = read_json_rows(spec, data, (lambda _: kinds) if kinds else None)
            if not read.total:
                raise ValueError(f"{spec}: no rows (an empty file)")
            if read.bad and not keep_bad:
                raise ValueError(read.bad[0].message(spec))
            return Rows(spec, read.table, read.rows if read.bad else None, read.bad)
        raise ValueError(f"{spec}: unknown format {path.suffix or '(no suffix)'}; use parquet, jsonl or json")
    if missing_path(spec):
        raise ValueError(f"{spec}: no such file")
    require(f"{spec}: no such file, and loading it as a Hugging Face dataset", "datasets")
    import datasets

    with hub_access() as offline:
        try:
            return Rows(f"{spec}:{split}", datasets.load_dataset(spec, split=split).data.table)
        except Exception as e:  # network, cache and naming problems surface as many exception types
            where = "its local cache (the hub cannot be reached)" if offline else "the Hugging Face hub or its cache"
            raise ValueError(
                f"{spec}: no such file, and {where} could not provide it as a dataset ({type(e).__name__}: "
                f"{first_line(e)}). Without network, download it where there is one (`hf download {spec} "
                "--repo-type dataset --local-dir DIR`) and pass the folder or a parquet or jsonl file instead"
            ) from None


def _nonempty(rows: Rows) -> Rows:
    """``rows``, unless the file has none: training or scoring on nothing is an error, as in skyfilter."""
    if not rows.table.num_rows:
        raise ValueError(f"{rows.name}: no rows (an empty file)")
    return rows


def _parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"{path}: not a readable parquet file ({first_line(e)})") from None


def read_pairs(spec: str, split: str = "train") -> pa.Table:
    """Training pairs (:func:`read_rows` with :data:`PAIR_KINDS`); a row that cannot be read is an error."""
    return read_rows(spec, split, PAIR_KINDS).table


#: The suffixes a skyrm ``--bad-rows`` file may have (parquet, else JSON Lines).
BAD_ROWS_SUFFIXES = (".parquet", ".jsonl", ".ndjson")


def check_bad_rows_path(path: str | Path | None) -> None:
    """Refuses, before any work, a ``--bad-rows`` file whose suffix names no format skyrm writes."""
    if path is not None and Path(path).suffix.lower() not in BAD_ROWS_SUFFIXES:
        raise ValueError(f"{path}: --bad-rows: unknown output format {Path(path).suffix!r}; use .parquet or .jsonl")


def write_bad_rows(staged: Staged, path: str | Path, reads: list[tuple[str, list[BadRow]]]) -> int:
    """Stages the bad rows of ``reads`` (file name, its bad rows) for ``path`` (``.parquet``, else JSON Lines;
    renamed into place with the run's other outputs by ``staged``) in skyfilter's ``--bad-rows`` layout
    (:data:`skyshared.jsonrows.BAD_ROWS_SCHEMA`). Returns how many."""
    table = bad_rows_table(reads)
    tmp = staged.path(path)
    if Path(path).suffix.lower() == ".parquet":
        pq.write_table(table, tmp)
    else:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in table.to_pylist()), encoding="utf-8")
    return table.num_rows


def _messages(value, role: str) -> list[dict]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return [{"role": m["role"], "content": m["content"]} for m in value]


def conversations(table: pa.Table) -> tuple[list[list[dict]], list[list[dict]]]:
    """The chosen and the rejected conversation of every pair (prompt turns first)."""
    names = set(table.schema.names)
    if not {"chosen", "rejected"} <= names:
        raise ValueError(f"pairs need `chosen` and `rejected` columns; found {table.schema.names}")
    prompts = table.column("prompt").to_pylist() if "prompt" in names else [None] * table.num_rows
    chosen, rejected = [], []
    for prompt, c, r in zip(prompts, table.column("chosen").to_pylist(), table.column("rejected").to_pylist(),
                            strict=True):  # fmt: skip
        head = _messages(prompt, "user")
        chosen.append(head + _messages(c, "assistant"))
        rejected.append(head + _messages(r, "assistant"))
    return chosen, rejected


@dataclass
class EncodedPairs:
    """Token ids of the kept pairs, which input rows they are, and how many pairs were dropped, per reason."""

    chosen: list[list[int]] = field(default_factory=list)
    rejected: list[list[int]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    margins: list[float] | None = None  # the kept pairs' own margins, when the data has a ``margin`` column

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def total(self) -> int:
        """The pairs read: kept plus dropped."""
        return len(self.rows) + sum(self.dropped.values())

    def digest(self) -> str:
        """A hash of what training reads (every kept pair's token ids and margin, in order), to tell one data set
        from another at resume; it does not depend on where the pairs came from."""
        h = hashlib.blake2b(digest_size=16)
        for i, (c, r) in enumerate(zip(self.chosen, self.rejected, strict=True)):
            h.update(array("q", [len(c), len(r), *c, *r]).tobytes())
            if self.margins is not None:
                h.update(struct.pack("<d", self.margins[i]))
        return h.hexdigest()


def drop_warning(encoded: EncodedPairs, source: str) -> str | None:
    """One warning line when more than a tenth of the pairs of ``source`` were dropped: how many, why (the largest
    reason first) and what changes it; None otherwise."""
    lost = sum(encoded.dropped.values())
    if not encoded.total or lost <= DROP_WARNING_SHARE * encoded.total:
        return None
    reasons = "; ".join(
        f"{count:,} {reason} ({DROP_REMEDIES.get(reason, 'see the data')})"
        for reason, count in encoded.dropped.most_common()
    )
    return f"warning: {source}: {lost:,} of {encoded.total:,} pairs dropped ({lost / encoded.total:.0%}): {reasons}"


def text_encoder(tokenizer):
    """Text already in the chat template's format (e.g. a policy's prompt and answer, as OpenRLHF sends them) ->
    token ids, with exactly one BOS where the tokenizer uses one: the BOS the text writes, else one added."""
    bos_id = tokenizer.bos_token_id
    uses_bos = bos_id is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos_id]

    def encode(text: str) -> list[int]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if uses_bos and ids[:1] != [bos_id]:
            ids = [bos_id, *ids]
        return ids

    return encode


def chat_encoder(tokenizer):
    """Conversation -> token ids, with exactly one BOS where the tokenizer uses one."""
    encode_text = text_encoder(tokenizer)

    def encode(messages: list[dict]) -> list[int]:
        return encode_text(tokenizer.apply_chat_template(messages, tokenize=False))

    return encode


def truncate(ids: list[int], max_length: int, bos_id: int | None) -> list[int]:
    """``ids`` cut to ``max_length`` tokens from the front: the first token when it is the BOS, then the last tokens,
    so the template's final token (where the reward is read) and the answer's end stay. Evaluation
    (:class:`skyrm.eval.runner.Encoder`) keeps the last ``max_length`` tokens, BOS or not, as RewardBench's runner."""
    if len(ids) <= max_length:
        return ids
    if bos_id is not None and ids[0] == bos_id:
        return [ids[0], *ids[len(ids) - max_length + 1 :]]
    return ids[len(ids) - max_length :]


def _margins(table: pa.Table) -> list[float] | None:
    """The ``margin`` column as floats (None without one); a missing or non-numeric value is an error naming its row."""
    if MARGIN_COLUMN not in table.schema.names:
        return None
    values = table.column(MARGIN_COLUMN).to_pylist()
    for row, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"row {row}, column {MARGIN_COLUMN}: expected a finite number, found {value!r}")
    return [float(v) for v in values]


def encode_pairs(table: pa.Table, tokenizer, max_length: int, truncation: str = "drop") -> EncodedPairs:
    if truncation not in TRUNCATION:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATION)}, got {truncation!r}")
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat template; set one (tokenizer.chat_template) first")
    encode = chat_encoder(tokenizer)
    margins = _margins(table)
    out = EncodedPairs(margins=None if margins is None else [])
    for row, (c, r) in enumerate(zip(*conversations(table), strict=True)):
        if len(c) < 2 or len(r) < 2 or c[-1]["role"] != "assistant":
            out.dropped["no_answer"] += 1
            continue
        chosen, rejected = encode(c), encode(r)
        truncated = max(len(chosen), len(rejected)) > max_length
        if truncated and truncation == "drop":
            out.dropped["too_long"] += 1
            continue
        if truncated:
            chosen = truncate(chosen, max_length, tokenizer.bos_token_id)
            rejected = truncate(rejected, max_length, tokenizer.bos_token_id)
        if chosen == rejected:
            out.dropped["identical_after_truncation" if truncated else "identical"] += 1
            continue
        out.chosen.append(chosen)
        out.rejected.append(rejected)
        out.rows.append(row)
        if margins is not None:
            out.margins.append(margins[row])
    return out
