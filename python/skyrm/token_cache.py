"""Tokenised pairs kept on disk, so that a second run, and every torchrun process of a run, reads the token ids
instead of tokenizing the data again.

An entry is one Arrow IPC file, ``CACHE/tokenized/KEY.arrow`` (``chosen`` and ``rejected`` as
``large_list<int32>``, the input ``row`` of each kept pair, its ``margin`` when there is one; the drop counts in the
schema's metadata), read back memory-mapped, without a copy. ``KEY`` hashes everything the token ids depend on:
the tokenizer (its whole definition: vocabulary, merges, normalisation, special tokens), the chat template, the
data (the columns that are read, as Arrow data), ``max_length``, the truncation policy and the margin column. A
change to any of them is a new entry; nothing is ever read for other data or settings. An entry appears whole (written
under a temporary name, then renamed); one that cannot be read is encoded again and replaced.

The entries are in the ``tokenized`` folder of skyrm's cache (:mod:`skyrm.cache`). Old entries are not removed:
delete the folder to reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
from skyshared.outputs import temporary_name

from skyrm.cache import cache_root
from skyrm.data import MARGIN_COLUMN, EncodedPairs, TokenLists

__all__ = ["cache_folder", "cache_key", "load", "save"]

#: Bump when the entries' layout or the encoding changes.
FORMAT = 2
#: The columns whose data the token ids depend on (besides the margin column).
READ_COLUMNS = ("prompt", "chosen", "rejected")


def cache_folder(cache_dir: str | None) -> Path:
    """Where the entries go (module docstring)."""
    return cache_root(cache_dir) / "tokenized"


class _Hashing:
    """A writable file that hashes what is written to it (Arrow's IPC writer streams the table through it)."""

    def __init__(self, digest) -> None:
        self.digest, self.closed = digest, False

    def write(self, data) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    specials = {"class": type(tokenizer).__name__, "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id}
    return definition + json.dumps(specials, sort_keys=True)


def cache_key(table: pa.Table, tokenizer, max_length: int, truncation: str, margin_column: str | None) -> str:
    """The entry of these pairs under these settings (module docstring)."""
    h = hashlib.blake2b(digest_size=20)
    settings = {"format": FORMAT, "max_length": max_length, "truncation": truncation, "margin": margin_column,
                "template": tokenizer.chat_template}  # fmt: skip
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(hashlib.blake2b(_tokenizer_fingerprint(tokenizer).encode()).digest())
    read = [c for c in (*READ_COLUMNS, margin_column or MARGIN_COLUMN) if c in table.schema.names]
    data = table.select(read)
    sink = pa.PythonFile(_Hashing(h), mode="w")
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return h.hexdigest()


def _path(folder: Path, key: str) -> Path:
    return folder / f"{key}.arrow"


def load(folder: Path, key: str) -> EncodedPairs | None:
    """The entry, memory-mapped; None when there is none or it cannot be read."""
    path = _path(folder, key)
    if not path.is_file():
        return None
    try:
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        meta = json.loads(table.schema.metadata[b"skyrm.dropped"])
        margins = table.column("margin").to_pylist() if "margin" in table.schema.names else None
        chosen, rejected = (TokenLists.from_arrow(table.column(side)) for side in ("chosen", "rejected"))
        return EncodedPairs(chosen, rejected, table.column("row").to_pylist(), Counter(meta), margins)
    except (OSError, pa.ArrowException, KeyError, ValueError, TypeError):
        return None


def save(folder: Path, key: str, encoded: EncodedPairs) -> Path:
    """Writes the entry (whole or not at all) and returns its path."""
    columns = {"chosen": encoded.chosen.to_arrow(), "rejected": encoded.rejected.to_arrow(),
               "row": pa.array(encoded.rows, pa.int64())}  # fmt: skip
    if encoded.margins is not None:
        columns["margin"] = pa.array(encoded.margins, pa.float64())
    table = pa.table(columns).replace_schema_metadata({"skyrm.dropped": json.dumps(dict(encoded.dropped))})
    folder.mkdir(parents=True, exist_ok=True)
    path = _path(folder, key)
    tmp = temporary_name(path)
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
