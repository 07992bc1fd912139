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
(``too_long``); ``"truncate"`` keeps the first ``max_length`` tokens of each side and drops pairs whose two sides
are then the same tokens (``identical_after_truncation``). Every dropped pair is counted.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from skyshared.hub import hub_access, missing_path
from skyshared.jsonrows import BadRow, read_json_rows
from skyshared.outputs import Staged

from skyrm.requires import first_line, require

__all__ = ["TRUNCATION", "PAIR_KINDS", "EncodedPairs", "Rows", "read_rows", "read_pairs", "write_bad_rows",
           "conversations", "encode_pairs"]  # fmt: skip

TRUNCATION = ("drop", "truncate")


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
                return Rows(spec, pa.concat_tables([_parquet(f) for f in files], promote_options="default"))
        raise ValueError(f"{spec}: a folder without data/{split}-*.parquet, {split}-*.parquet or {split}.parquet")
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".parquet"):
            return Rows(spec, _parquet(path))
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


def _parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"{path}: not a readable parquet file ({first_line(e)})") from None


def read_pairs(spec: str, split: str = "train") -> pa.Table:
    """Training pairs (:func:`read_rows` with :data:`PAIR_KINDS`); a row that cannot be read is an error."""
    return read_rows(spec, split, PAIR_KINDS).table


def write_bad_rows(staged: Staged, path: str | Path, reads: list[tuple[str, list[BadRow]]]) -> int:
    """Stages the bad rows of ``reads`` (file name, its bad rows) for ``path`` (``.parquet``, else JSON Lines;
    renamed into place with the run's other outputs by ``staged``): ``input_file``, ``input_row`` (0-based),
    ``line``, ``reason`` and the row's JSON text (``row``), as skyfilter's ``--bad-rows`` writes them. Returns how
    many."""
    records = [{"input_file": name, "input_row": b.row, "line": b.line, "reason": b.reason, "row": b.text}
               for name, bad in reads for b in bad]  # fmt: skip
    tmp = staged.path(path)
    if Path(path).suffix.lower() == ".parquet":
        schema = pa.schema([("input_file", pa.string()), ("input_row", pa.int64()), ("line", pa.int64()),
                            ("reason", pa.string()), ("row", pa.string())])  # fmt: skip
        pq.write_table(pa.Table.from_pylist(records, schema=schema), tmp)
    else:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return len(records)


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

    def __len__(self) -> int:
        return len(self.rows)


def chat_encoder(tokenizer):
    """Conversation -> token ids, with exactly one BOS where the tokenizer uses one."""
    bos_id = tokenizer.bos_token_id
    uses_bos = bos_id is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos_id]

    def encode(messages: list[dict]) -> list[int]:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if uses_bos and ids[:1] != [bos_id]:
            ids = [bos_id, *ids]
        return ids

    return encode


def encode_pairs(table: pa.Table, tokenizer, max_length: int, truncation: str = "drop") -> EncodedPairs:
    if truncation not in TRUNCATION:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATION)}, got {truncation!r}")
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat template; set one (tokenizer.chat_template) first")
    encode = chat_encoder(tokenizer)
    out = EncodedPairs()
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
            chosen, rejected = chosen[:max_length], rejected[:max_length]
        if chosen == rejected:
            out.dropped["identical_after_truncation" if truncated else "identical"] += 1
            continue
        out.chosen.append(chosen)
        out.rejected.append(rejected)
        out.rows.append(row)
    return out
