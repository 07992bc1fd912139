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
(``identical_after_truncation``). So are pairs whose two sides are the same before any cut (``identical``), and
sides without an assistant answer after prompt turns (``no_answer``) or with a blank one (``empty_answer``), and
pairs whose conversation the chat template refuses (``template_refused``: Gemma's template raises an error for a
system turn). Every dropped pair is counted, and :func:`drop_warning` says when a run loses more than a tenth of its
pairs, why, and which flag changes it.

An optional numeric ``margin`` column (TRL's name; ``--margin-column`` names another) gives each pair its own margin
for the margin-aware losses.

Pairs are rendered a chunk at a time and each chunk is tokenized in one call to the fast tokenizer's Rust backend,
which spreads it over every core; the token ids are kept flat (:class:`TokenLists`). :mod:`skyrm.token_cache`
keeps the result on disk for the next run and for every torchrun process.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from skyshared.hub import hub_access, missing_path
from skyshared.jsonrows import BadRow, bad_rows_table, read_json_rows
from skyshared.outputs import Staged
from skyshared.turns import HELPSTEER_MARK, parse_helpsteer_prompt

from skyrm.requires import first_line, require

__all__ = ["TRUNCATION", "PAIR_KINDS", "EncodedPairs", "TokenLists", "Rows", "read_rows", "read_pairs",
           "write_bad_rows", "check_bad_rows_path", "conversations", "encode_pairs", "token_ids", "truncate",
           "drop_warning", "render", "TemplateRefusal"]  # fmt: skip

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
    "no_answer": "the pairs need a prompt and an assistant answer: convert HH-RLHF transcripts, sharegpt or RMB rows "
    "with `skyfilter convert` (skyfilter.to_pairs in Python) first, else fix the data",
    "empty_answer": "an answer is blank: no preference to learn; fix the data (skyfilter's curation drops such pairs "
    "as empty_response)",
    "template_refused": "the chat template refuses the conversation (Gemma's takes no system turn, Mistral's wants "
    "user and assistant turns to alternate): fold or drop those turns in the data (or train with another "
    "--chat-template)",
}


class TemplateRefusal(ValueError):
    """The chat template raised an error for a conversation (``raise_exception`` in the template: a role it does not
    take, turns that do not alternate); the message is the template's."""


def render(tokenizer, messages: list[dict]) -> str:
    """A conversation as the text of the tokenizer's chat template; a template that refuses it raises
    :class:`TemplateRefusal` with its message, not a Jinja traceback."""
    from jinja2.exceptions import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False)
    except TemplateError as e:
        raise TemplateRefusal(f"the chat template refuses the conversation: {e}") from None


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
#: Layouts of pairs skyrm does not read, by the columns that tell them (``skyfilter convert`` writes them as pairs).
UNCONVERTED = {
    ("conversations", "chosen", "rejected"): "sharegpt rows (conversations with chosen / rejected turns)",
    ("conversation_input", "chosen", "reject"): "RMB rows (conversation_input with chosen / reject answers)",
}


def refuse_unconverted(spec: str, names: list[str]) -> None:
    """A file of pairs in a layout skyrm does not read (:data:`UNCONVERTED`) is one line saying how to convert it,
    not an error about its first row's answer."""
    for columns, what in UNCONVERTED.items():
        if set(columns) <= set(names):
            command = f"skyfilter convert {spec} --out pairs.parquet"
            raise ValueError(f"{spec}: {what}: skyrm reads prompt / chosen / rejected pairs; convert them first "
                             f"with `{command}` (skyfilter.to_pairs in Python)")  # fmt: skip


def read_rows(spec: str, split: str = "train", kinds: dict[str, tuple[str, ...]] | None = None,
              keep_bad: bool = False, set_apart_by: str | None = "--bad-rows FILE") -> Rows:  # fmt: skip
    """The one reader of skyrm (training pairs, benchmarks): a parquet, jsonl (optionally .gz) or json file, a
    dataset folder (``data/<split>-*.parquet``, as on the hub and in skyfilter curate's output), or a Hugging Face
    dataset id. In a JSON file, a row that is not an object or holds a value of a kind ``kinds`` rules out for its
    column (or unlike the column's other rows) is an error ``FILE:LINE: column 'c': ...``, or with ``keep_bad`` is
    left out and listed in ``bad`` (the error names ``set_apart_by``, the caller's flag that does so)."""
    rows = _read_rows(spec, split, kinds, keep_bad, set_apart_by)
    if kinds is PAIR_KINDS:
        refuse_unconverted(spec, rows.table.schema.names)
    return rows


def _read_rows(spec: str, split: str, kinds: dict[str, tuple[str, ...]] | None, keep_bad: bool,
               set_apart_by: str | None) -> Rows:  # fmt: skip
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

            def expected(names: list[str]) -> dict[str, tuple[str, ...]] | None:
                if kinds is PAIR_KINDS:  # before the rows' kinds: a sharegpt answer is an object
                    refuse_unconverted(spec, names)
                return kinds

            read = read_json_rows(spec, data, expected if kinds else None)
            if not read.total:
                raise ValueError(f"{spec}: no rows (an empty file)")
            if read.bad and not keep_bad:
                hint = f" ({set_apart_by} sets such rows apart and reads on)" if set_apart_by else ""
                raise ValueError(read.bad[0].message(spec) + hint)
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
    if isinstance(value, str):  # a prompt with HelpSteer2's turn markers is its turns, as skyfilter reads it
        return parse_helpsteer_prompt(value) if role == "user" and HELPSTEER_MARK in value else [
            {"role": role, "content": value}]  # fmt: skip
    return [{"role": m["role"], "content": m["content"]} for m in value]


def answer_problem(conversation: list[dict]) -> str | None:
    """Why a conversation cannot be trained on or scored, as a drop reason, or None: ``no_answer`` without prompt
    turns and then the assistant's answer last (an HH-RLHF transcript read as a single answer has no prompt turn:
    ``skyfilter.to_pairs`` splits it), ``empty_answer`` where that answer is blank."""
    if len(conversation) < 2 or conversation[-1]["role"] != "assistant":
        return "no_answer"
    content = conversation[-1]["content"]
    return "empty_answer" if content is None or not content.strip() else None


def _whole(side) -> bool:
    """Whether a chosen or rejected value holds the whole conversation: a message list that opens with a turn that
    is not the assistant's."""
    return isinstance(side, list) and bool(side) and side[0].get("role") != "assistant"


def conversations(table: pa.Table) -> tuple[list[list[dict]], list[list[dict]]]:
    """The chosen and the rejected conversation of every pair (prompt turns first). Where both sides hold the
    whole conversation (HuggingFaceH4/ultrafeedback_binarized: a prompt string beside them), the prompt column is
    not put before them again, as TRL reads that layout (skyfilter reads it so too)."""
    names = set(table.schema.names)
    if not {"chosen", "rejected"} <= names:
        raise ValueError(f"pairs need `chosen` and `rejected` columns; found {table.schema.names}")
    prompts = table.column("prompt").to_pylist() if "prompt" in names else [None] * table.num_rows
    chosen, rejected = [], []
    for prompt, c, r in zip(prompts, table.column("chosen").to_pylist(), table.column("rejected").to_pylist(),
                            strict=True):  # fmt: skip
        head = [] if _whole(c) and _whole(r) else _messages(prompt, "user")
        chosen.append(head + _messages(c, "assistant"))
        rejected.append(head + _messages(r, "assistant"))
    return chosen, rejected


class TokenLists(Sequence):
    """Token-id sequences stored flat (one int32 array of values, one int64 array of offsets), as an Arrow
    ``large_list<int32>`` column stores them: a million pairs take 4 bytes a token instead of a Python int's 28, and
    load from the tokenisation cache without parsing. ``lists[i]`` is sequence ``i`` as a list of ints."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray) -> None:
        self.values, self.offsets = values, offsets

    @classmethod
    def from_lists(cls, lists: list[list[int]]) -> TokenLists:
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum([len(ids) for ids in lists], out=offsets[1:])
        values = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int32, count=int(offsets[-1]))
        return cls(values, offsets)

    @classmethod
    def from_arrow(cls, array: pa.Array) -> TokenLists:
        """From a ``large_list<int32>`` array (no copy where it holds one chunk without an offset)."""
        array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
        offsets = array.offsets.to_numpy()
        return cls(array.values.to_numpy(), offsets - offsets[0])

    def to_arrow(self) -> pa.Array:
        return pa.LargeListArray.from_arrays(pa.array(self.offsets), pa.array(self.values))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"sequence {i} of {len(self)}")
        i %= len(self)
        return self.values[self.offsets[i] : self.offsets[i + 1]].tolist()

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class EncodedPairs:
    """Token ids of the kept pairs, which input rows they are, and how many pairs were dropped, per reason."""

    chosen: TokenLists
    rejected: TokenLists
    rows: list[int] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    margins: list[float] | None = None  # the kept pairs' own margins, when the data has a margin column

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
        for lists in (self.chosen, self.rejected):
            h.update(np.ascontiguousarray(lists.lengths(), dtype="<i8").tobytes())
            h.update(np.ascontiguousarray(lists.values, dtype="<i4").tobytes())
        if self.margins is not None:
            h.update(np.asarray(self.margins, dtype="<f8").tobytes())
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


def leading_bos(tokenizer) -> int | None:
    """The BOS id when the tokenizer puts one in front of what it encodes (Llama's do), else None."""
    bos_id = tokenizer.bos_token_id
    uses = bos_id is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos_id]
    return bos_id if uses else None


def token_ids(tokenizer, texts: list[str], bos: int | None | bool = True) -> list[list[int]]:
    """Texts already in the chat template's format (e.g. a policy's prompt and answer, as OpenRLHF sends them) ->
    token ids, with exactly one BOS where the tokenizer uses one: the BOS the text writes, else one added. A fast
    tokenizer encodes the batch in its Rust backend, on every core (``TOKENIZERS_PARALLELISM`` unset or true).
    ``bos``: :func:`leading_bos` of the tokenizer when the caller has it (True: find it out here)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        ids = [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    else:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    bos_id = leading_bos(tokenizer) if bos is True else bos
    if bos_id is not None:
        ids = [x if x[:1] == [bos_id] else [bos_id, *x] for x in ids]
    return ids


def text_encoder(tokenizer):
    """:func:`token_ids` of one text (the tokenizer's BOS rule found out once)."""
    bos = leading_bos(tokenizer)
    return lambda text: token_ids(tokenizer, [text], bos)[0]


def chat_encoder(tokenizer):
    """Conversation -> token ids, with exactly one BOS where the tokenizer uses one."""
    encode = text_encoder(tokenizer)
    return lambda messages: encode(render(tokenizer, messages))


def truncate(ids: list[int], max_length: int, bos_id: int | None) -> list[int]:
    """``ids`` cut to ``max_length`` tokens from the front: the first token when it is the BOS, then the last tokens,
    so the template's final token (where the reward is read) and the answer's end stay. Evaluation
    (:class:`skyrm.eval.runner.Encoder`) keeps the last ``max_length`` tokens, BOS or not, as RewardBench's runner."""
    if len(ids) <= max_length:
        return ids
    if bos_id is not None and ids[0] == bos_id:
        return [ids[0], *ids[len(ids) - max_length + 1 :]]
    return ids[len(ids) - max_length :]


def _margins(table: pa.Table, column: str | None) -> list[float] | None:
    """The margin column as floats: ``column``, else TRL's ``margin`` when there is one (None without); a missing
    or non-numeric value is an error naming its row."""
    if column is not None and column not in table.schema.names:
        raise ValueError(f"--margin-column {column}: no such column; the columns are {table.schema.names}")
    column = column or MARGIN_COLUMN
    if column not in table.schema.names:
        return None
    values = table.column(column).to_pylist()
    for row, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"row {row}, column {column}: expected a finite number, found {value!r}")
    return [float(v) for v in values]


#: Pairs rendered and tokenized together (one batch for the tokenizer's Rust backend).
ENCODE_CHUNK = 8192


def encode_pairs(table: pa.Table, tokenizer, max_length: int, truncation: str = "drop",
                 margin_column: str | None = None, progress: bool = False) -> EncodedPairs:  # fmt: skip
    """Every pair of ``table`` as token ids (module docstring: the template, one BOS, truncation, the drops),
    tokenized a chunk of pairs at a time on every core; ``progress`` shows a bar (on a terminal)."""
    from tqdm.auto import tqdm

    if truncation not in TRUNCATION:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATION)}, got {truncation!r}")
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat template: give one with --chat-template FILE|NAME (or set "
                         "tokenizer.chat_template)")  # fmt: skip
    margins = _margins(table, margin_column)
    chosen_all, rejected_all = conversations(table)
    chosen_ids: list[list[int]] = []
    rejected_ids: list[list[int]] = []
    rows: list[int] = []
    dropped: Counter = Counter()
    with tqdm(total=table.num_rows, desc="tokenizing", unit="pair", disable=not progress or None) as bar:
        for start in range(0, table.num_rows, ENCODE_CHUNK):
            chunk, texts = [], []
            for row in range(start, min(start + ENCODE_CHUNK, table.num_rows)):
                problem = answer_problem(chosen_all[row]) or answer_problem(rejected_all[row])
                if not problem:
                    try:
                        pair = [render(tokenizer, side[row]) for side in (chosen_all, rejected_all)]
                    except TemplateRefusal:
                        problem = "template_refused"
                if problem:
                    dropped[problem] += 1
                else:
                    chunk.append(row)
                    texts += pair
            ids = token_ids(tokenizer, texts)
            for i, row in enumerate(chunk):
                chosen, rejected = ids[2 * i], ids[2 * i + 1]
                truncated = max(len(chosen), len(rejected)) > max_length
                if chosen == rejected:
                    dropped["identical"] += 1
                    continue
                if truncated and truncation == "drop":
                    dropped["too_long"] += 1
                    continue
                if truncated:
                    chosen = truncate(chosen, max_length, tokenizer.bos_token_id)
                    rejected = truncate(rejected, max_length, tokenizer.bos_token_id)
                    if chosen == rejected:
                        dropped["identical_after_truncation"] += 1
                        continue
                chosen_ids.append(chosen)
                rejected_ids.append(rejected)
                rows.append(row)
            bar.update(min(ENCODE_CHUNK, table.num_rows - start))
    kept_margins = None if margins is None else [margins[row] for row in rows]
    return EncodedPairs(TokenLists.from_lists(chosen_ids), TokenLists.from_lists(rejected_ids), rows, dropped,
                        kept_margins)  # fmt: skip
