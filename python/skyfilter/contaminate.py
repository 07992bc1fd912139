"""N-gram contamination of training pairs against benchmark prompts.

Presets (``--preset``), each overridable with ``ngram``, ``threshold`` and ``fields``:

=========  ==========================================================================  ===  =========
preset     normalisation and tokens                                                    n    flagged
=========  ==========================================================================  ===  =========
skywork    scikit-learn ``CountVectorizer``: lowercase, tokens ``(?u)\\b\\w\\w+\\b``        7    any hit
gpt3       lm-evaluation-harness: ASCII lowercase, ASCII punctuation deleted, split     13   any hit
palm       as gpt3                                                                      8    >= 70%
=========  ==========================================================================  ===  =========

A row's *overlap* is the fraction of its distinct n-grams that occur in some benchmark prompt; it is
flagged when it shares at least one n-gram and its overlap reaches the threshold. Rows whose text is
null, empty or shorter than n tokens have no n-grams and are never flagged (they are counted in the
report). With ``ignore_common=K``, benchmark n-grams found in more than K training rows are ignored:
generic phrases ("what are the most effective ways to") then stop flagging rows.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skyfilter import _core
from skyfilter.benchmarks import Benchmark, load_benchmark
from skyfilter.frames import as_arrow, per_batch
from skyfilter.io import (
    AtomicWriters,
    InputError,
    RowReading,
    Source,
    check_outputs,
    input_specs,
    iter_batches,
    kept_rows,
    open_sources,
    worker_threads,
    write_bad_rows,
)
from skyfilter.schema import (
    FIELDS,
    SchemaError,
    match_texts,
    pair_table,
    refuse_unread_answers,
    resolve_layout,
    text_row,
)
from skyfilter.short_prompts import ShortPrompts, too_short

__all__ = [
    "Preset",
    "PRESETS",
    "Matcher",
    "contaminate",
    "run",
    "ContaminationReport",
    "EVIDENCE_COLUMNS",
    "RESULT_SCHEMA",
]

#: Columns added to flagged rows, after ``input_file``, in this order.
EVIDENCE_FIELDS = (
    pa.field("input_row", pa.int64()),
    pa.field("bench_name", pa.string()),
    pa.field("bench_row", pa.int64()),
    pa.field("bench_subset", pa.string()),
    pa.field("matched_ngram", pa.string()),
    pa.field("overlap", pa.float64()),
    pa.field("n_matched", pa.int64()),
)
EVIDENCE_COLUMNS = ("input_file", *(f.name for f in EVIDENCE_FIELDS))


@dataclass(frozen=True)
class Preset:
    """A decontamination convention."""

    name: str
    tokenizer: str
    ngram: int
    threshold: float
    description: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "skywork", "words", 7, 0.0, "Skywork-Reward / scikit-learn CountVectorizer(ngram_range=(7, 13)), any hit"
        ),
        Preset("gpt3", "whitespace", 13, 0.0, "GPT-3 / lm-evaluation-harness 13-grams, any hit"),
        Preset("palm", "whitespace", 8, 0.7, "PaLM 8-grams, flagged when >= 70% of the row's 8-grams are seen"),
    )
}


def _numbers(groups: pa.Array | np.ndarray) -> np.ndarray:
    return (
        groups.to_numpy(zero_copy_only=False) if isinstance(groups, pa.Array | pa.ChunkedArray) else np.asarray(groups)
    )


class Matcher:
    """An index of benchmark prompts and the options to match training pairs against it."""

    def __init__(
        self,
        benchmarks: Sequence[Benchmark],
        preset: str = "skywork",
        ngram: int | None = None,
        threshold: float | None = None,
        fields: str = "prompt",
        threads: int | None = None,
        *,
        match_short: bool = False,
    ):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        if fields not in FIELDS:
            raise ValueError(f"fields must be one of {', '.join(FIELDS)}, got {fields!r}")
        if not benchmarks:
            raise ValueError("no benchmark given")
        names = [b.name for b in benchmarks]
        if len(set(names)) != len(names):
            raise ValueError(f"benchmark names must be distinct, got {names}")
        self.preset = PRESETS[preset]
        self.ngram = ngram if ngram is not None else self.preset.ngram
        self.threshold = threshold if threshold is not None else self.preset.threshold
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {self.threshold}")
        self.fields = fields
        self.threads = worker_threads(threads)
        self.benchmarks = list(benchmarks)
        self.index = _core.BenchmarkIndex(
            [b.prompts for b in self.benchmarks], tokenizer=self.preset.tokenizer, n=self.ngram
        )
        #: With ``match_short``, the benchmark prompts too short for an n-gram, matched whole (their groups follow
        #: the index's n-gram groups).
        self.short = (
            ShortPrompts(self.benchmarks, self.preset.tokenizer, self.ngram, self.index.n_groups)
            if match_short
            else None
        )
        #: The match groups: the index's n-grams, then the short prompts.
        self.n_groups = self.index.n_groups + (len(self.short) if self.short is not None else 0)
        #: The groups ignored (``ignore_common``): a boolean per group, or None.
        self.ignore: pa.Array | None = None
        # For the evidence: each benchmark's name, and every benchmark's subsets one after another (null for a
        # benchmark without), a row's at its benchmark's start plus its row.
        self._bench_names = np.array(names, dtype=object)
        self._subsets = pa.concat_arrays(
            [pa.nulls(len(b), pa.string()) if b.subsets is None else b.subsets.cast(pa.string()) for b in benchmarks]
        )
        self._bench_starts = np.cumsum([0] + [len(b) for b in benchmarks])

    def describe(self) -> str:
        rule = "any shared n-gram" if self.threshold == 0 else f"overlap >= {self.threshold:g}"
        tokens = f"{self.preset.tokenizer} tokens, {self.ngram}-grams"
        short = ", shorter prompts matched whole" if self.short is not None else ""
        return f"preset {self.preset.name}: {tokens}, {rule}{short}, fields {self.fields}"

    def postings(self, groups: pa.Array | np.ndarray) -> pa.RecordBatch:
        """Columns ``group``, ``bench``, ``row``: the benchmark rows of each of ``groups``, those of the n-gram
        groups first, then those of the short prompts', each in the order given (ascending groups: ascending)."""
        groups = _numbers(groups)
        ngrams = groups < self.index.n_groups
        found = self.index.postings(pa.array(groups[ngrams], type=pa.uint32()))
        if self.short is None or ngrams.all():
            return found
        return pa.Table.from_batches([found, self.short.postings(groups[~ngrams])]).combine_chunks().to_batches()[0]

    def ngram_texts(self, groups: pa.Array | np.ndarray) -> pa.Array:
        """The text of each of ``groups``: its n-gram, or the short prompt's tokens joined by spaces."""
        groups = _numbers(groups)
        ngrams = groups < self.index.n_groups
        if self.short is None or ngrams.all():
            return self.index.ngram_texts(pa.array(groups, type=pa.uint32()))
        texts = pa.concat_arrays([self.index.ngram_texts(pa.array(groups[ngrams], type=pa.uint32())),
                                  self.short.texts(groups[~ngrams])])  # fmt: skip
        where = np.empty(len(groups), dtype=np.int64)
        where[np.flatnonzero(ngrams)] = np.arange(ngrams.sum())
        where[np.flatnonzero(~ngrams)] = ngrams.sum() + np.arange((~ngrams).sum())
        return texts.take(pa.array(where))

    def match(
        self, pairs: pa.Table, where: str = "input", input_rows: np.ndarray | None = None, counts: str = "all"
    ) -> pa.RecordBatch:
        """Raw per-row results for canonical pairs (see ``_core.BenchmarkIndex.match_rows``).

        ``where`` and ``input_rows`` (the input row of each pair; default: its position) place the pairs in their
        input for the error of an invalid text. ``counts="matched"`` counts the distinct n-grams of matched rows only
        (``n_ngrams`` null for the others that have some): all that flags, evidence and reports need, and faster.
        """
        texts, bounds = match_texts(pairs, self.fields)
        return self.match_rows(texts, bounds, where, input_rows, counts)

    def match_rows(
        self,
        texts: pa.Array,
        bounds: pa.Array | None,
        where: str = "input",
        input_rows: np.ndarray | None = None,
        counts: str = "all",
    ) -> pa.RecordBatch:
        """:meth:`match` of texts as :func:`skyfilter.schema.match_texts` gives them (a string array of any Arrow
        string type: one text a row, or with ``bounds`` row ``r``'s texts ``texts[bounds[r]:bounds[r + 1]]``)."""
        ignore = None if self.ignore is None else self.ignore.slice(0, self.index.n_groups)
        try:
            result = self.index.match_rows(
                texts, bounds, threshold=self.threshold, ignore=ignore, threads=self.threads, counts=counts
            )
        except _core.InvalidTextError as e:
            row = text_row(e.args[1], bounds)
            row = row if input_rows is None else int(input_rows[row])
            raise InputError(f"{where}: row {row} (0-based): {e.args[2]}") from None
        return result if self.short is None else self._with_short_copies(result, texts, bounds)

    def _with_short_copies(self, result: pa.RecordBatch, texts: pa.Array, bounds: pa.Array | None) -> pa.RecordBatch:
        """``result`` with the rows whose texts copy a short benchmark prompt flagged, that prompt's group among
        their matched groups (and their first where no n-gram flagged them); the n-gram counts and the overlap
        as they were."""
        assert self.short is not None
        if bounds is None:  # a text a row: only a row without n-grams can copy a prompt too short for one
            candidates = np.flatnonzero(
                pc.fill_null(pc.equal(result.column("n_ngrams"), 0), False).to_numpy(zero_copy_only=False)
            )
        else:
            candidates = np.arange(len(texts))
        at, groups = self.short.copies(texts, candidates)
        if self.ignore is not None and len(groups):
            kept = ~self.ignore.to_numpy(zero_copy_only=False)[groups]
            at, groups = at[kept], groups[kept]
        if not len(at):
            return result
        rows = at if bounds is None else np.searchsorted(bounds.to_numpy(), at, side="right") - 1
        rows, groups = np.unique(np.stack([rows, groups]), axis=1)  # each (row, group) once, by row then group
        hit, first_of_row = np.unique(rows, return_index=True)
        flagged = result.column("flagged").to_numpy(zero_copy_only=False).copy()
        first = result.column("first_group")
        first_groups = pc.fill_null(first, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        missing = pc.is_null(first).to_numpy(zero_copy_only=False).copy()
        newly = ~flagged[hit]
        first_groups[hit[newly]] = groups[first_of_row[newly]]
        missing[hit[newly]] = False
        flagged[hit] = True
        lists = result.column("matched_groups")
        all_rows = np.concatenate([pc.list_parent_indices(lists).to_numpy(), rows])
        all_groups = np.concatenate([lists.flatten().to_numpy().astype(np.int64), groups])
        order = np.argsort(all_rows, kind="stable")  # a row's n-gram groups, then its short prompts'
        offsets = np.zeros(len(flagged) + 1, dtype=np.int32)
        np.cumsum(np.bincount(all_rows, minlength=len(flagged)), out=offsets[1:])
        columns = {
            **{name: result.column(name) for name in ("n_ngrams", "n_matched", "overlap")},
            "flagged": pa.array(flagged),
            "first_group": pa.array(first_groups, type=pa.uint32(), mask=missing),
            "matched_groups": pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(all_groups[order], type=pa.uint32())
            ),
        }
        return pa.record_batch(list(columns.values()), names=list(columns))

    def ignore_common(self, document_frequency: np.ndarray, max_rows: int) -> np.ndarray:
        """Ignores from now on the benchmark n-grams matched by more than ``max_rows`` rows; returns them."""
        common = document_frequency > max_rows
        self.ignore = pa.array(common) if common.any() else None
        return np.flatnonzero(common)

    def evidence(self, result: pa.RecordBatch, rows: np.ndarray, input_rows: np.ndarray) -> dict[str, pa.Array]:
        """Evidence columns for the given result rows, rows that matched (``input_rows``: their rows in the input):
        the first matched n-gram and its first benchmark row."""
        groups = result.column("first_group").take(pa.array(rows, type=pa.int64()))
        # Each distinct group's postings once, in ascending order of the groups: its first is where it starts.
        distinct, inverse = np.unique(groups.to_numpy(), return_inverse=True)
        postings = self.postings(distinct)
        first = np.searchsorted(postings.column("group").to_numpy(), distinct)[inverse]
        bench = postings.column("bench").to_numpy()[first].astype(np.int64)
        bench_row = postings.column("row").to_numpy()[first].astype(np.int64)
        return {
            "input_row": pa.array(input_rows, type=pa.int64()),
            "bench_name": pa.array(self._bench_names[bench], type=pa.string()),
            "bench_row": pa.array(bench_row),
            "bench_subset": self._subsets.take(pa.array(self._bench_starts[bench] + bench_row)),
            "matched_ngram": self.ngram_texts(groups),
            "overlap": result.column("overlap").take(pa.array(rows, type=pa.int64())),
            "n_matched": result.column("n_matched").take(pa.array(rows, type=pa.int64())).cast(pa.int64()),
        }


def as_benchmarks(bench) -> list[Benchmark]:
    items = bench if isinstance(bench, list | tuple) else [bench]
    return [b if isinstance(b, Benchmark) else load_benchmark(b) for b in items]


def contaminate(
    table,
    bench,
    preset: str = "skywork",
    *,
    ngram: int | None = None,
    threshold: float | None = None,
    fields: str = "prompt",
    ignore_common: int | None = None,
    layout: str | None = None,
    prompt_column: str | None = None,
    threads: int | None = None,
    counts: str = "all",
    match_short: bool = False,
):
    """Matches every row of ``table`` against ``bench``; one result row per input row.

    ``table``: pairs in any layout of :mod:`skyfilter.schema`, as any kind :func:`skyfilter.frames.as_arrow` takes
    (a pyarrow Table / RecordBatch / RecordBatchReader, a polars DataFrame / LazyFrame, a ``datasets.Dataset``, ...);
    the result is of the same kind. A ``RecordBatchReader`` is matched batch by batch as the result is read (with
    ``ignore_common``, which counts n-gram hits over all rows first, it is read whole). ``bench``: a
    :class:`Benchmark`, a benchmark name or file, or a list of them. Result columns (:data:`RESULT_SCHEMA`):
    ``input_row``, ``flagged``, ``overlap``, ``n_ngrams``, ``n_matched`` and, for flagged rows, ``bench_name``,
    ``bench_row``, ``bench_subset``, ``matched_ngram`` (null elsewhere). ``counts="matched"`` counts the distinct
    n-grams (``n_ngrams``) of the rows that matched only, null for the others that have some: the same flags,
    overlaps and evidence, faster (counting took 5-16% of the matching on real prompts). A row whose ``n_ngrams``
    is 0 has no text or fewer tokens than n and cannot be flagged by an n-gram, even where it copies a short benchmark
    prompt word for word (as the reference method): ``match_short=True`` flags such copies too
    (:mod:`skyfilter.short_prompts`: the whole prompt's tokens are the evidence's ``matched_ngram``).
    """
    data, restore = as_arrow(table, stream=ignore_common is None)
    refuse_unmatched_answers(data.schema, fields, layout, prompt_column, "table")
    matcher = Matcher(as_benchmarks(bench), preset, ngram, threshold, fields, threads, match_short=match_short)

    def results(batch: pa.Table | pa.RecordBatch, offset: int) -> pa.Table:
        pairs = pair_table(batch, source="table", layout=layout, prompt_column=prompt_column)
        input_rows = np.arange(offset, offset + batch.num_rows, dtype=np.int64)
        result = matcher.match(pairs, "table", input_rows, counts)
        return pa.table({"input_row": pa.array(input_rows), **row_results(matcher, result)}, schema=RESULT_SCHEMA)

    if isinstance(data, pa.RecordBatchReader):
        return restore(per_batch(data, results, RESULT_SCHEMA))
    if ignore_common is not None:
        result = matcher.match(pair_table(data, source="table", layout=layout, prompt_column=prompt_column))
        matcher.ignore_common(document_frequency(result, matcher.n_groups), ignore_common)
    return restore(results(data, 0))


#: The columns of :func:`contaminate`'s result: ``input_row`` and :data:`RESULT_COLUMNS`.
RESULT_SCHEMA = pa.schema(
    [
        pa.field("input_row", pa.int64()),
        pa.field("flagged", pa.bool_()),
        pa.field("overlap", pa.float64()),
        pa.field("n_ngrams", pa.int64()),
        pa.field("n_matched", pa.int64()),
        pa.field("bench_name", pa.string()),
        pa.field("bench_row", pa.int64()),
        pa.field("bench_subset", pa.string()),
        pa.field("matched_ngram", pa.string()),
    ]
)
#: The per-row result columns of :func:`row_results`.
RESULT_COLUMNS = tuple(RESULT_SCHEMA.names[1:])


def row_results(matcher: Matcher, result: pa.RecordBatch) -> dict[str, pa.Array]:
    """One value per matched row of each of :data:`RESULT_COLUMNS` (the evidence null for rows not flagged)."""
    flagged = result.column("flagged").to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(flagged)
    ev = matcher.evidence(result, rows, rows)
    at = np.full(len(flagged), -1, dtype=np.int64)  # each row's place among the flagged rows, null if none
    at[rows] = np.arange(len(rows))
    at = pa.array(at, mask=at < 0)

    def scatter(values: pa.Array) -> pa.Array:
        return values.take(at)

    return {
        "flagged": result.column("flagged"),
        "overlap": result.column("overlap"),
        "n_ngrams": result.column("n_ngrams").cast(pa.int64()),
        "n_matched": result.column("n_matched").cast(pa.int64()),
        **{k: scatter(ev[k]) for k in ("bench_name", "bench_row", "bench_subset", "matched_ngram")},
    }


def document_frequency(result: pa.RecordBatch, n_groups: int) -> np.ndarray:
    groups = result.column("matched_groups").flatten().to_numpy(zero_copy_only=False)
    return np.bincount(groups.astype(np.int64), minlength=n_groups)


# ------------------------------------------------------------------------------------------- file runs


@dataclass
class ContaminationReport:
    """What a run did, row by row accounted for; written as report.json."""

    method: dict
    inputs: list[str]
    rows: int = 0
    flagged: int = 0
    clean: int = 0
    bad_rows: int = 0
    rows_without_ngrams: int = 0
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    benchmarks: dict[str, dict] = field(default_factory=dict)
    top_matched_ngrams: list[dict] = field(default_factory=list)
    ignored_common_ngrams: list[dict] | None = None
    outputs: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


class Tally:
    """Running counts over batches (mergeable: the ray engine adds up one tally per piece)."""

    def __init__(self, matcher: Matcher):
        self.matcher = matcher
        self.df = np.zeros(matcher.n_groups, dtype=np.int64)
        self.sources: dict[str, Counter] = {}
        self.subset_rows: Counter = Counter()  # (benchmark, subset) -> flagged rows matching that subset
        self.bench_rows: Counter = Counter()  # benchmark -> flagged rows matching it (in any of its subsets)
        self.rows = self.flagged = self.without = 0

    def state(self) -> dict:
        """The counts as plain data (n-gram counts sparse), for a tally made elsewhere to be merged."""
        hit = np.flatnonzero(self.df)
        return {
            "df": (hit, self.df[hit]),
            "sources": self.sources,
            "subset_rows": self.subset_rows,
            "bench_rows": self.bench_rows,
            "rows": (self.rows, self.flagged, self.without),
        }

    def merge(self, state: dict) -> None:
        """Adds the counts of another tally (its :meth:`state`)."""
        hit, counts = state["df"]
        self.df[hit] += counts
        for name, counter in state["sources"].items():
            self.sources.setdefault(name, Counter()).update(counter)
        self.subset_rows.update(state["subset_rows"])
        self.bench_rows.update(state["bench_rows"])
        rows, flagged, without = state["rows"]
        self.rows, self.flagged, self.without = self.rows + rows, self.flagged + flagged, self.without + without

    def add(self, pairs: pa.Table, result: pa.RecordBatch) -> np.ndarray:
        flagged = result.column("flagged").to_numpy(zero_copy_only=False)
        self.rows += len(flagged)
        self.flagged += int(flagged.sum())
        self.without += pc.sum(pc.equal(result.column("n_ngrams"), 0)).as_py() or 0  # null: counted only if matched
        self.df += document_frequency(result, len(self.df))
        sources = pairs.column("source")
        for key, values in (("rows", sources), ("flagged", sources.filter(pa.array(flagged)))):
            for entry in pc.value_counts(values).to_pylist():
                self.sources.setdefault(str(entry["values"]), Counter())[key] += entry["counts"]
        self._count_subsets(result, np.flatnonzero(flagged))
        return flagged

    def _count_subsets(self, result: pa.RecordBatch, rows: np.ndarray) -> None:
        if not len(rows):
            return
        lists = result.column("matched_groups").take(pa.array(rows, type=pa.int64()))
        pairs = pa.table({"row": pc.list_parent_indices(lists), "group": lists.flatten()})
        postings = pa.Table.from_batches([self.matcher.postings(pc.unique(pairs.column("group")))])
        joined = pairs.join(postings.rename_columns(["group", "bench", "bench_row"]), "group")
        seen_subsets, seen_benchmarks = set(), set()
        for row, bench, bench_row in zip(
            *(joined.column(c).to_numpy() for c in ("row", "bench", "bench_row")), strict=True
        ):
            b = self.matcher.benchmarks[int(bench)]
            subset = b.subsets[int(bench_row)].as_py() if b.subsets is not None else None
            if (int(row), b.name, subset) not in seen_subsets:
                seen_subsets.add((int(row), b.name, subset))
                self.subset_rows[(b.name, subset)] += 1
            if (int(row), b.name) not in seen_benchmarks:  # a row matching several subsets counts once
                seen_benchmarks.add((int(row), b.name))
                self.bench_rows[b.name] += 1

    def benchmarks(self) -> dict[str, dict]:
        """Prompts, prompts too short for an n-gram (:func:`skyfilter.short_prompts.too_short`), prompts hit and
        flagged rows per benchmark and subset."""
        hit_groups = np.flatnonzero(self.df > 0).astype(np.uint32)
        postings = self.matcher.postings(hit_groups)
        hit = set(zip(postings.column("bench").to_pylist(), postings.column("row").to_pylist(), strict=True))
        out = {}
        for i, b in enumerate(self.matcher.benchmarks):
            subsets = b.subset_names()
            per: dict[str | None, Counter] = {}
            short_ones = too_short(b.prompts, self.matcher.preset.tokenizer, self.matcher.ngram).tolist()
            for row, (subset, short) in enumerate(zip(subsets, short_ones, strict=True)):
                c = per.setdefault(subset, Counter())
                c["prompts"] += 1
                c["prompts_too_short"] += short
                c["prompts_hit"] += (i, row) in hit
            entry = {
                "origin": b.origin,
                "prompts": len(b),
                "prompts_too_short": sum(c["prompts_too_short"] for c in per.values()),
                "prompts_hit": sum(c["prompts_hit"] for c in per.values()),
                "flagged_rows": self.bench_rows[b.name],
            }
            if b.subsets is not None:
                entry["per_subset"] = {
                    str(s): {
                        "prompts": c["prompts"],
                        "prompts_too_short": c["prompts_too_short"],
                        "prompts_hit": c["prompts_hit"],
                        "flagged_rows": self.subset_rows.get((b.name, s), 0),
                    }
                    for s, c in sorted(per.items(), key=lambda kv: str(kv[0]))
                }
            out[b.name] = entry
        return out


def top_ngrams(matcher: Matcher, df: np.ndarray, groups: Iterable[int], limit: int) -> list[dict]:
    """The given benchmark n-grams, most matched first, with the number of training rows matching each."""
    groups = sorted(groups, key=lambda g: (-df[g], g))[:limit]
    texts = matcher.ngram_texts(np.array(groups, dtype=np.int64)).to_pylist()
    return [{"ngram": t, "rows": int(df[g])} for g, t in zip(groups, texts, strict=True)]


def refuse_unmatched_answers(
    schema: pa.Schema, fields: str, layout: str | None, prompt_column: str | None, where: str
) -> None:
    """``fields="all"`` matches the answers too: a file read as prompts alone whose other columns look like answers
    (:func:`skyfilter.schema.refuse_unread_answers`) would have them go unmatched without a word; refused."""
    if fields == "all":
        try:
            refuse_unread_answers(schema, layout, prompt_column)
        except SchemaError as e:
            raise InputError(f"{where}: --fields all would leave the answers unmatched: {e}") from None


def text_columns(source: Source, fields: str, layout: str | None, prompt_column: str | None) -> str:
    """Which input column(s) the matched texts come from, for error messages."""
    if prompt_column is not None:
        return prompt_column
    try:
        columns = resolve_layout(source.schema, layout, source.name).columns
    except SchemaError as e:
        raise InputError(str(e)) from None
    return columns[0] if fields != "all" else "/".join(dict.fromkeys(columns))


def read_pairs(source: Source, batch: pa.RecordBatch, layout: str | None, prompt_column: str | None) -> pa.Table:
    try:
        return pair_table(batch, source=source.name, layout=layout, prompt_column=prompt_column)
    except SchemaError as e:
        raise InputError(f"{source.name}: {e}") from None


def run(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    benchmarks: Sequence[Benchmark],
    *,
    preset: str = "skywork",
    ngram: int | None = None,
    threshold: float | None = None,
    fields: str = "prompt",
    ignore_common: int | None = None,
    match_short: bool = False,
    out: str | None = None,
    flagged: str | None = None,
    report: str | None = None,
    bad_rows: str | None = None,
    split: str | None = None,
    layout: str | None = None,
    prompt_column: str | None = None,
    allow_empty: bool = False,
    threads: int | None = None,
    batch_rows: int = 65_536,
    progress: bool | None = None,
) -> ContaminationReport:
    """Streams every input through the matcher, writing clean rows, flagged rows and a report.

    The clean output holds the unflagged rows unchanged; the flagged output holds the flagged rows plus
    :data:`EVIDENCE_COLUMNS`; rows that cannot be read as the layout stop the run, or with ``bad_rows`` go to that
    file (:data:`skyfilter.io.BAD_ROWS_SCHEMA`); outputs appear only if the whole run succeeds. Rows in = clean +
    flagged + bad rows.
    """
    inputs = input_specs(inputs)
    check_outputs(
        [*inputs, *(b.origin for b in benchmarks)],
        {"--out": out, "--flagged": flagged, "--bad-rows": bad_rows},
        {"--report": report},
    )
    matcher = Matcher(benchmarks, preset, ngram, threshold, fields, threads, match_short=match_short)
    reading = RowReading(layout, prompt_column, keep_bad=bad_rows is not None, allow_empty=allow_empty)
    sources = open_sources(inputs, split, EVIDENCE_COLUMNS, reading)
    for s in sources:
        refuse_unmatched_answers(s.schema, fields, layout, prompt_column, s.name)

    def batches(desc: str):
        for s, offset, batch in iter_batches(sources, batch_rows, desc, progress):
            where = f"{s.name}, column {text_columns(s, fields, layout, prompt_column)}"
            pairs = read_pairs(s, batch, layout, prompt_column)
            input_rows = s.input_rows(np.arange(offset, offset + batch.num_rows))
            yield s, batch, pairs, matcher.match(pairs, where, input_rows, counts="matched"), input_rows

    ignored = None
    if ignore_common is not None:
        df = np.zeros(matcher.n_groups, dtype=np.int64)
        for *_, result, _ in batches("counting n-grams"):
            df += document_frequency(result, len(df))
        common = matcher.ignore_common(df, ignore_common)
        ignored = top_ngrams(matcher, df, common, limit=len(common))

    tally = Tally(matcher)
    schema = sources[0].schema
    flagged_schema = flagged_schema_of(schema)
    with AtomicWriters({"clean": out, "flagged": flagged, "bad_rows": bad_rows}) as writers:
        writers.set_schema("clean", schema)
        writers.set_schema("flagged", flagged_schema)
        bad = write_bad_rows(writers, "bad_rows", sources)
        for source, batch, pairs, result, input_rows in batches("matching"):
            clean, flagged_rows = split_batch(matcher, tally, source, batch, pairs, result, input_rows, flagged_schema)
            writers.write("clean", clean)
            if flagged_rows is not None and "flagged" in writers:
                writers.write("flagged", flagged_rows)
        result_report = build_report(
            matcher, tally, [s.name for s in sources], bad, ignore_common, ignored,
            {"clean": out, "flagged": flagged, "bad_rows": bad_rows, "report": report},
        )  # fmt: skip
        if report is not None:
            writers.write_text(report, result_report.to_json())
    return result_report


def flagged_schema_of(schema: pa.Schema) -> pa.Schema:
    """The columns of the flagged output: the input's, ``input_file`` and the evidence."""
    return pa.schema([*schema, pa.field("input_file", pa.string()), *EVIDENCE_FIELDS])


def split_batch(
    matcher: Matcher,
    tally: Tally,
    source: Source,
    batch: pa.RecordBatch,
    pairs: pa.Table,
    result: pa.RecordBatch,
    input_rows: np.ndarray,
    flagged_schema: pa.Schema,
) -> tuple[pa.Table, pa.RecordBatch | None]:
    """Counts a matched batch and splits it: the clean rows unchanged (slices of the batch where they can be),
    and the flagged rows plus evidence (None when there are none)."""
    is_flagged = tally.add(pairs, result)
    clean = kept_rows(batch, ~is_flagged)
    rows = np.flatnonzero(is_flagged)
    if not len(rows):
        return clean, None
    ev = matcher.evidence(result, rows, input_rows[rows])
    kept = batch.take(pa.array(rows))
    columns = list(kept.columns) + [pa.repeat(pa.scalar(source.name), len(rows))] + list(ev.values())
    return clean, pa.RecordBatch.from_arrays(columns, schema=flagged_schema)


def build_report(
    matcher: Matcher,
    tally: Tally,
    inputs: list[str],
    bad: int,
    ignore_common: int | None,
    ignored: list[dict] | None,
    outputs: dict[str, str | None],
) -> ContaminationReport:
    """The report of a run from its tally (``bad``: the bad rows set apart)."""
    return ContaminationReport(
        method={
            "preset": matcher.preset.name,
            "tokenizer": matcher.preset.tokenizer,
            "ngram": matcher.ngram,
            "threshold": matcher.threshold,
            "fields": matcher.fields,
            "ignore_common": ignore_common,
            "match_short": matcher.short is not None,
            "description": matcher.describe(),
        },
        inputs=inputs,
        rows=tally.rows + bad,
        flagged=tally.flagged,
        clean=tally.rows - tally.flagged,
        bad_rows=bad,
        rows_without_ngrams=tally.without,
        per_source={k: {"rows": v["rows"], "flagged": v["flagged"]} for k, v in sorted(tally.sources.items())},
        benchmarks=tally.benchmarks(),
        top_matched_ngrams=top_ngrams(matcher, tally.df, np.flatnonzero(tally.df > 0), limit=20),
        ignored_common_ngrams=ignored,
        outputs=outputs,
    )
