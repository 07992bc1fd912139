"""``skyfilter contaminate --engine ray``: the local engine's matching, piece by piece on a Ray cluster.

Each actor of the pool builds the benchmark index once (from the benchmarks shipped to it through the object
store) and matches its pieces with the same kernel and the same per-batch code as the local engine
(:func:`skyfilter.contaminate.split_batch`): clean rows and flagged rows plus evidence go to the piece's shards,
and the piece's counts (:class:`skyfilter.contaminate.Tally`) come back to the driver, which adds them up into
the same report. Matching is row-local, so the decisions cannot depend on the pieces. ``ignore_common`` needs the
number of training rows matching each benchmark n-gram first: one pass counts them per piece (a sparse vector
each), the driver adds them up, and the matching pass ignores the common ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from skyshared.ray_session import import_ray, ray_session

from skyfilter.benchmarks import Benchmark
from skyfilter.contaminate import (
    EVIDENCE_COLUMNS,
    RESULT_COLUMNS,
    ContaminationReport,
    Matcher,
    Tally,
    as_benchmarks,
    build_report,
    document_frequency,
    flagged_schema_of,
    read_pairs,
    refuse_unmatched_answers,
    row_results,
    split_batch,
    text_columns,
    top_ngrams,
)
from skyfilter.io import InputError, RowReading
from skyfilter.ray.shards import (
    Outputs,
    Piece,
    PieceWorker,
    Shard,
    check_ray_outputs,
    cluster_cpus,
    expand_inputs,
    plan,
    read_piece,
    run_pieces,
)
from skyfilter.ray.shards import write_shard as _write_shard
from skyfilter.schema import SchemaError, pair_table

__all__ = ["run", "contaminate"]


def _matcher(job: dict) -> Matcher:
    """On a worker: the job's benchmark index (one thread: the cluster's CPUs are the parallelism), ignoring the
    common n-grams the driver found."""
    matcher = Matcher(job["benchmarks"], job["preset"], job["ngram"], job["threshold"], job["fields"], 1,
                      match_short=job["match_short"])  # fmt: skip
    if job.get("ignore") is not None:
        matcher.ignore = pa.array(job["ignore"])
    return matcher


class _Matching(PieceWorker):
    """Matches pieces: counts n-gram hits only (``job["count"]``), or writes the clean and flagged shards."""

    def __init__(self, job: dict):
        super().__init__(job)
        self.matcher = _matcher(job)

    def process(self, shard: Shard, piece: Piece):
        job, matcher = self.job, self.matcher
        source, batch = read_piece(shard, piece, job["reading"])
        layout, prompt_column = job["reading"].layout, job["reading"].prompt_column
        where = f"{source.name}, column {text_columns(source, job['fields'], layout, prompt_column)}"
        pairs = read_pairs(source, batch, layout, prompt_column)
        input_rows = source.input_rows(np.arange(piece.start, piece.stop))
        result = matcher.match(pairs, where, input_rows, counts="matched")
        if job.get("count"):
            df = document_frequency(result, matcher.n_groups)
            hit = np.flatnonzero(df)
            return hit, df[hit]
        tally = Tally(matcher)
        clean, flagged = split_batch(matcher, tally, source, batch, pairs, result, input_rows, job["flagged_schema"])
        if job["folders"]["clean"] is not None:
            _write_shard(job["folders"]["clean"], piece, clean)
        if flagged is not None and job["folders"]["flagged"] is not None:
            _write_shard(job["folders"]["flagged"], piece, flagged)
        return tally.state()


def run(
    inputs: Sequence[str],
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
    layout: str | None = None,
    prompt_column: str | None = None,
    allow_empty: bool = False,
    batch_rows: int = 65_536,
    address: str | None = None,
    progress: bool = False,
) -> ContaminationReport:
    """As :func:`skyfilter.contaminate.run`, on Ray: ``out`` and ``flagged`` are folders of parquet shards (the
    same rows, in the same order, as the local engine's files), ``report`` and ``bad_rows`` the same files;
    ``batch_rows`` rows per piece."""
    check_ray_outputs(
        [*inputs, *(b.origin for b in benchmarks)],
        {"--out": out, "--flagged": flagged},
        {"--report": report, "--bad-rows": bad_rows},
    )
    expand_inputs(inputs)  # a missing input fails now, before Ray starts
    matcher = Matcher(benchmarks, preset, ngram, threshold, fields, None, match_short=match_short)
    reading = RowReading(layout, prompt_column, keep_bad=bad_rows is not None, allow_empty=allow_empty)
    with ray_session(address, command="skyfilter contaminate", progress=progress) as ray:
        the_plan = plan(ray, inputs, reading, EVIDENCE_COLUMNS, batch_rows)
        refuse_unmatched_answers(the_plan.schema, fields, layout, prompt_column, the_plan.shards[0].name)
        job = {
            "shards": the_plan.shards,
            "reading": reading,
            "benchmarks": list(benchmarks),
            "preset": preset,
            "ngram": ngram,
            "threshold": threshold,
            "fields": fields,
            "match_short": match_short,
            "flagged_schema": flagged_schema_of(the_plan.schema),
        }
        ignored = None
        if ignore_common is not None:
            df = np.zeros(matcher.n_groups, dtype=np.int64)
            for hit, counts in run_pieces(ray, the_plan, _Matching, {**job, "count": True}, "counting"):
                df[hit] += counts
            common = matcher.ignore_common(df, ignore_common)
            ignored = top_ngrams(matcher, df, common, limit=len(common))
            job["ignore"] = None if matcher.ignore is None else matcher.ignore.to_numpy(zero_copy_only=False)
        tally = Tally(matcher)
        with Outputs({"clean": out, "flagged": flagged}, {"--report": report, "--bad-rows": bad_rows}) as outputs:
            job["folders"] = {"clean": outputs.folder("clean"), "flagged": outputs.folder("flagged")}
            for state in run_pieces(ray, the_plan, _Matching, job, "matching"):
                tally.merge(state)
            bad = the_plan.bad_rows.num_rows
            names = [s.name for s in the_plan.shards]
            result = build_report(
                matcher, tally, names, bad, ignore_common, ignored,
                {"clean": out, "flagged": flagged, "bad_rows": bad_rows, "report": report},
            )  # fmt: skip
            outputs.commit(
                {"clean": the_plan.schema, "flagged": job["flagged_schema"]},
                {"clean": result.clean, "flagged": result.flagged},
                the_plan.bad_rows,
                result.to_json(),
            )
    return result


# ------------------------------------------------------------------------------------------ datasets


class _MatchRows:
    """``map_batches`` callable over a user's dataset: the batch with :data:`RESULT_COLUMNS` added, or with
    ``count`` the benchmark n-grams its rows hit (group, rows)."""

    def __init__(self, job: dict):
        self.job = job
        self.matcher = _matcher(job)

    def __call__(self, batch: pa.Table) -> pa.Table:
        try:
            pairs = pair_table(
                batch, source="dataset", layout=self.job["layout"], prompt_column=self.job["prompt_column"]
            )
        except SchemaError as e:
            raise InputError(f"dataset: {e}") from None
        result = self.matcher.match(pairs, "dataset")
        if self.job.get("count"):
            df = document_frequency(result, self.matcher.n_groups)
            hit = np.flatnonzero(df)
            return pa.table({"group": hit, "rows": df[hit]})
        for name, values in row_results(self.matcher, result).items():
            batch = batch.append_column(name, values)
        return batch


def contaminate(
    dataset,
    bench,
    preset: str = "skywork",
    *,
    ngram: int | None = None,
    threshold: float | None = None,
    fields: str = "prompt",
    ignore_common: int | None = None,
    layout: str | None = None,
    prompt_column: str | None = None,
    match_short: bool = False,
):
    """A Ray dataset of pairs (any layout of :mod:`skyfilter.schema`) matched against ``bench`` (a
    :class:`~skyfilter.benchmarks.Benchmark`, a benchmark name or file, or a list of them): the same rows with
    :data:`~skyfilter.contaminate.RESULT_COLUMNS` added (``flagged``, ``overlap``, ``n_ngrams``, ``n_matched`` and the
    evidence of flagged rows), lazily, as Ray datasets are; keep the clean rows with
    ``.filter(expr="flagged == False")``. The decisions are :func:`skyfilter.contaminate.contaminate`'s.
    ``ignore_common`` runs one pass over the dataset first to count the rows that hit each benchmark n-gram."""
    benchmarks = as_benchmarks(bench)
    refuse_unmatched_answers(dataset.schema().base_schema, fields, layout, prompt_column, "dataset")
    clash = [c for c in RESULT_COLUMNS if c in dataset.schema().names]
    if clash:
        raise InputError(f"dataset: already has column(s) {clash}, which contaminate adds; rename them first")
    job = {
        "benchmarks": benchmarks, "preset": preset, "ngram": ngram, "threshold": threshold, "fields": fields,
        "match_short": match_short, "layout": layout, "prompt_column": prompt_column,
    }  # fmt: skip
    if ignore_common is not None:
        ray = import_ray("skyfilter.ray.contaminate")
        matcher = Matcher(benchmarks, preset, ngram, threshold, fields, None, match_short=match_short)
        df = np.zeros(matcher.n_groups, dtype=np.int64)
        counts = dataset.map_batches(_MatchRows, fn_constructor_args=({**job, "count": True},), batch_format="pyarrow",
                                     compute=_actors()).to_arrow_refs()  # fmt: skip
        for table in ray.get(counts):
            np.add.at(df, table.column("group").to_numpy(), table.column("rows").to_numpy())
        matcher.ignore_common(df, ignore_common)
        job["ignore"] = None if matcher.ignore is None else matcher.ignore.to_numpy(zero_copy_only=False)
    return dataset.map_batches(_MatchRows, fn_constructor_args=(job,), batch_format="pyarrow", compute=_actors())


def _actors():
    """A pool of actors as large as the cluster's CPUs: each builds the benchmark index once."""
    ray = import_ray("skyfilter.ray.contaminate")
    return ray.data.ActorPoolStrategy(min_size=1, max_size=cluster_cpus(ray))
