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

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from skyshared.hub import hub_access, missing_path

from skyrm.requires import first_line, require

__all__ = ["TRUNCATION", "EncodedPairs", "read_pairs", "conversations", "encode_pairs"]

TRUNCATION = ("drop", "truncate")


def read_pairs(spec: str, split: str = "train") -> pa.Table:
    """A parquet, jsonl (optionally .gz) or json file, a dataset folder (``data/<split>-*.parquet``, as on the hub
    and in skyfilter curate's output), or a Hugging Face dataset id."""
    path = Path(spec)
    if path.is_dir():  # a dataset folder: data/<split>-*.parquet (the hub's layout, skyfilter curate's output)
        for pattern in (f"data/{split}-*.parquet", f"{split}-*.parquet", f"{split}.parquet"):
            files = sorted(path.glob(pattern))
            if files:
                return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
        raise ValueError(f"{spec}: a folder without data/{split}-*.parquet, {split}-*.parquet or {split}.parquet")
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".parquet"):
            return pq.read_table(path)
        if name.endswith((".jsonl", ".jsonl.gz", ".json")):
            import gzip

            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                rows = json.load(f) if name.endswith(".json") else [json.loads(line) for line in f if line.strip()]
            return pa.Table.from_pylist(rows)
        raise ValueError(f"{spec}: unknown format; use parquet, jsonl or json")
    if missing_path(spec):
        raise ValueError(f"{spec}: no such file")
    require(f"{spec}: no such file, and loading it as a Hugging Face dataset", "datasets")
    import datasets

    with hub_access() as offline:
        try:
            return datasets.load_dataset(spec, split=split).data.table
        except Exception as e:  # network, cache and naming problems surface as many exception types
            where = "its local cache (the hub cannot be reached)" if offline else "the Hugging Face hub or its cache"
            raise ValueError(
                f"{spec}: no such file, and {where} could not provide it as a dataset ({type(e).__name__}: "
                f"{first_line(e)}). Without network, download it where there is one (`hf download {spec} "
                "--repo-type dataset --local-dir DIR`) and pass the folder or a parquet or jsonl file instead"
            ) from None


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
