"""The ``skyfilter`` command line: thin click commands over the library."""

from __future__ import annotations

import gc
import re
import sys

import click

from skyfilter import _core
from skyfilter._lazy_pandas import defer_pandas
from skyfilter.benchmarks import BenchmarkError, load_benchmark
from skyfilter.contaminate import PRESETS, run
from skyfilter.curate import CurateError, run_curate
from skyfilter.dedup import KEYS, VERIFY, DedupOptions, run_dedup
from skyfilter.io import InputError, demo_file
from skyfilter.recipe import RecipeError, load_recipe, shipped_recipes
from skyfilter.report import format_dedup_summary, format_select_summary, format_summary
from skyfilter.schema import FIELDS, LAYOUTS, SchemaError
from skyfilter.select import SelectOptions, run_select

_USER_ERRORS = (InputError, BenchmarkError, SchemaError, RecipeError, CurateError, _core.SkyfilterError, ValueError,
                OSError)  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(_core.__version__, prog_name="skyfilter")
def main() -> None:
    """Curate preference data for reward models."""


def entry():
    """The ``skyfilter`` console script: :func:`main` in a process of its own."""
    # What is imported by now lives as long as the process: the collector need not walk it again at each full
    # collection while a command streams its rows (a full collection walked every module object). Not in main(),
    # which also runs inside other programs (click's test runner), where a freeze would keep their garbage.
    gc.freeze()
    defer_pandas()
    return main()


_SPLIT = click.option("--split", help="Split of a Hugging Face dataset INPUT (default train).")
_LAYOUT = click.option("--layout", type=click.Choice([lay.name for lay in LAYOUTS]), help="Force the input layout.")
_BATCH_ROWS = click.option("--batch-rows", type=click.IntRange(1), default=65_536, show_default=True,
                           help="Rows per batch.")  # fmt: skip
_BAD_ROWS = click.option(
    "--bad-rows",
    type=click.Path(dir_okay=False),
    help="Write rows that cannot be read as the layout (a JSON value of the wrong type, a line that is not a JSON "
    "object) here, with input_file, input_row, line and reason, and go on; without it such a row is an error naming "
    "file, line and column.",
)
_ALLOW_EMPTY = click.option(
    "--allow-empty", is_flag=True, help="Accept an input without rows (empty outputs); else an error."
)
_QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")


def _with(command, options):
    for option in reversed(options):
        command = option(command)
    return command


def _with_options(options):
    """A decorator that adds ``options`` (as :func:`_with`)."""
    return lambda command: _with(command, options)


def run_options(command):
    """Options every streaming command has: where the rows come from and how the run goes."""
    threads = click.option(
        "--threads", type=click.IntRange(0), help="Worker threads (default: all cores, or SKYFILTER_THREADS)."
    )
    return _with(command, [_SPLIT, _LAYOUT, threads, _BATCH_ROWS, _BAD_ROWS, _ALLOW_EMPTY, _QUIET, *ENGINE_OPTIONS])


ENGINE_OPTIONS = (
    click.option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="local: this machine. ray: a Ray cluster (Ray Data) with the same decisions; inputs may then be folders, "
        "globs and URIs (s3://, gs://, hdfs://). See docs/scale.md.",
    ),
    click.option(
        "--ray-address",
        metavar="ADDR",
        help="The Ray cluster of --engine ray (default: RAY_ADDRESS, else a local Ray instance for the run).",
    ),
)


def engine_options(command):
    return _with(command, ENGINE_OPTIONS)


def _data_output(flag: str, what: str):
    """A data output: a file, or with --engine ray a new folder of parquet shards."""
    return click.option(flag, type=click.Path(), help=f"{what} (--engine ray: a new folder of parquet shards).")


def _ray_only_files(engine: str, split: str | None) -> None:
    if engine == "ray" and split is not None:
        raise click.UsageError("--split reads a Hugging Face dataset; --engine ray reads files, folders and URIs")


@main.command()
@click.argument("inputs", nargs=-1, metavar="INPUT...")
@click.option(
    "--bench",
    "bench_names",
    multiple=True,
    metavar="NAME",
    help="Named hub benchmark: rewardbench (allenai/reward-bench, filtered) or rewardbench-2. Repeatable.",
)
@click.option(
    "--bench-file",
    "bench_files",
    multiple=True,
    metavar="FILE",
    help="Benchmark prompts from a local file (parquet, jsonl, json, arrow, csv). Repeatable.",
)
@click.option("--bench-column", default="prompt", show_default=True, help="Prompt column of --bench-file.")
@click.option(
    "--bench-subset-column",
    default="subset",
    show_default=True,
    help="Subset column of --bench-file (subset: used when present; another must be there).",
)
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default="skywork",
    show_default=True,
    help="skywork: lowercase, \\w\\w+ tokens, any shared 7-gram; gpt3: 13-grams; palm: 8-grams, >=70%.",
)
@click.option("--ngram", type=click.IntRange(1, 64), help="Override the preset's n.")
@click.option("--threshold", type=click.FloatRange(0, 1), help="Override the preset's overlap threshold (0 = any hit).")
@click.option(
    "--fields",
    type=click.Choice(FIELDS),
    default="prompt",
    show_default=True,
    help="Match the first user turn, every prompt turn, or every turn including the answers.",
)
@click.option(
    "--ignore-common",
    type=click.IntRange(0),
    metavar="K",
    help="Ignore benchmark n-grams found in more than K training rows (generic phrases). Off by default.",
)
@click.option(
    "--match-short",
    is_flag=True,
    help="Also flag a row whose tokens are exactly those of a benchmark prompt too short for an n-gram (fewer "
    "tokens than n), which n-grams never match. Off by default (the reference method does not).",
)
@_data_output("--out", "Write the clean (unflagged) rows, unchanged, here")
@_data_output("--flagged", "Write the flagged rows plus evidence here")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option("--prompt-column", help="Read prompts from this column (string or messages) instead of a layout.")
@run_options
@click.option("--demo", is_flag=True, help="Run on the sample pairs and sample benchmark shipped with skyfilter.")
def contaminate(
    inputs,
    bench_names,
    bench_files,
    bench_column,
    bench_subset_column,
    preset,
    ngram,
    threshold,
    fields,
    ignore_common,
    match_short,
    out,
    flagged,
    report,
    split,
    layout,
    prompt_column,
    threads,
    batch_rows,
    bad_rows,
    allow_empty,
    demo,
    quiet,
    engine,
    ray_address,
) -> None:
    """Find training pairs whose prompts share n-grams with benchmark prompts.

    INPUT is a file (parquet, arrow, jsonl[.gz], json, csv) or a Hugging Face dataset id, in any pair layout
    skyfilter knows (plain strings, message lists, TRL conversational, HH-RLHF transcripts, sharegpt, RMB).

    \b
    Examples:
      skyfilter contaminate --demo
      skyfilter contaminate train.parquet --bench rewardbench --out clean.parquet \\
          --flagged flagged.parquet --report report.json
      skyfilter contaminate pairs.jsonl --bench-file rb.parquet --preset gpt3 --ignore-common 20
    """
    if demo:
        inputs = inputs or (demo_file("demo_pairs.jsonl"),)
        bench_files = bench_files or (demo_file("demo_bench.jsonl"),)
    if not inputs:
        raise click.UsageError("give at least one INPUT (or --demo)")
    if not bench_names and not bench_files:
        raise click.UsageError("give at least one benchmark: --bench rewardbench, or --bench-file FILE")
    try:
        benchmarks = [load_benchmark(name) for name in bench_names]
        benchmarks += [load_benchmark(f, bench_column, bench_subset_column) for f in bench_files]
        _ray_only_files(engine, split)
        if engine == "ray":
            from skyfilter.ray import run_contaminate as run_on_ray

            result = run_on_ray(
                list(inputs), benchmarks, preset=preset, ngram=ngram, threshold=threshold, fields=fields,
                ignore_common=ignore_common, match_short=match_short, out=out, flagged=flagged, report=report,
                bad_rows=bad_rows, layout=layout, prompt_column=prompt_column, allow_empty=allow_empty,
                batch_rows=batch_rows, address=ray_address,
                progress=not quiet,
            )  # fmt: skip
        else:
            result = run(
                list(inputs), benchmarks, preset=preset, ngram=ngram, threshold=threshold, fields=fields,
                ignore_common=ignore_common, match_short=match_short, out=out, flagged=flagged, report=report,
                bad_rows=bad_rows, split=split,
                layout=layout, prompt_column=prompt_column, allow_empty=allow_empty, threads=threads,
                batch_rows=batch_rows, progress=False if quiet else None,
            )  # fmt: skip
    except _USER_ERRORS as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        click.echo(format_summary(result))


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@_data_output("--out", "Write the kept rows (plus cluster_id) here")
@_data_output("--dropped", "Write the dropped rows plus the reason here")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option(
    "--key",
    type=click.Choice(KEYS),
    default="pair",
    show_default=True,
    help="Duplicates share the prompt turns and both answers (pair), or the prompt turns alone.",
)
@click.option(
    "--keep-max",
    "score_column",
    metavar="COLUMN",
    help="Keep the copy with the highest score in this column (numbers, lists of numbers: their mean; a.b reads "
    "field b of struct column a; default: the first copy).",
)
@click.option("--lowercase", is_flag=True, help="Compare exact keys lower-cased (whitespace is always collapsed).")
@click.option(
    "--conflicts",
    type=click.Choice(["drop", "keep"]),
    default="drop",
    show_default=True,
    help="Rows whose prompt and two answers appear elsewhere with the opposite preference.",
)
@click.option("--near/--no-near", default=True, show_default=True, help="Also remove near duplicates (MinHash LSH).")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.7,
    show_default=True,
    help="Jaccard similarity of word shingles at which two rows are near duplicates.",
)
@click.option("--num-perm", type=click.IntRange(1, 1024), default=128, show_default=True, help="MinHash permutations.")
@click.option("--shingle", type=click.IntRange(1, 64), default=5, show_default=True, help="Words per shingle.")
@click.option("--bands", type=click.IntRange(1), help="LSH bands (default: chosen for the threshold).")
@click.option("--rows-per-band", type=click.IntRange(1), help="LSH rows per band (with --bands).")
@click.option(
    "--verify",
    type=click.Choice(VERIFY),
    default=DedupOptions.verify,
    show_default=True,
    help="Verify LSH candidates by the estimated Jaccard of their signatures, or by the exact Jaccard of their "
    "shingle sets (8 bytes per distinct shingle of each row held until the clusters are found; local engine only).",
)
@run_options
def dedup(inputs, out, dropped, report, key, score_column, lowercase, conflicts, near, threshold, num_perm, shingle,
          bands, rows_per_band, verify, split, layout, threads, batch_rows, bad_rows, allow_empty, quiet, engine,
          ray_address) -> None:  # fmt: skip
    """Remove exact and near-duplicate pairs, and pairs whose preference conflicts with another.

    Every input row ends in --out (kept) or --dropped (with reason conflict, exact_duplicate or
    near_duplicate, and the row it duplicates); both carry cluster_id, the first row of the row's cluster.
    """
    try:
        options = DedupOptions(key=key, score_column=score_column, lowercase=lowercase, conflicts=conflicts,
                               near=near, threshold=threshold, num_perm=num_perm, shingle=shingle, bands=bands,
                               rows_per_band=rows_per_band, verify=verify)  # fmt: skip
        _ray_only_files(engine, split)
        if engine == "ray":
            from skyfilter.ray import run_dedup as run_on_ray

            result = run_on_ray(list(inputs), options, out=out, dropped=dropped, report=report, bad_rows=bad_rows,
                                layout=layout, allow_empty=allow_empty, batch_rows=batch_rows, address=ray_address,
                                progress=not quiet)  # fmt: skip
        else:
            result = run_dedup(list(inputs), options, out=out, dropped=dropped, report=report, bad_rows=bad_rows,
                               split=split, layout=layout, allow_empty=allow_empty, threads=threads,
                               batch_rows=batch_rows, progress=False if quiet else None)  # fmt: skip
    except _USER_ERRORS as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        click.echo(format_dedup_summary(result))


def _assignments(ctx, param, values: tuple[str, ...]) -> dict[str, float]:
    """``NAME=NUMBER`` options (split at the last ``=``) as a dict."""
    out: dict[str, float] = {}
    for value in values:
        name, _, number = value.rpartition("=")
        try:
            parsed = float(number)
        except ValueError:
            name = ""
        if not name:
            raise click.BadParameter(f"expected NAME=NUMBER, got {value!r}", ctx=ctx, param=param)
        if name in out:
            raise click.BadParameter(f"{name!r} is given twice", ctx=ctx, param=param)
        out[name] = parsed
    return out


def _bound(flag: str, what: str):
    return click.option(flag, type=float, metavar="X", help=what)


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@_data_output("--out", "Write the kept rows, unchanged, here")
@_data_output("--dropped", "Write the dropped rows plus the rule here")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option(
    "--score",
    metavar="COLUMN",
    help="Rank by this column for --top / --top-default (numbers, or lists of numbers: their mean; a.b: a struct "
    "field).",
)
@click.option("--group-by", metavar="COLUMN", help="Rank each value of this column on its own (e.g. task_category).")
@click.option(
    "--top",
    "fractions",
    multiple=True,
    metavar="GROUP=F",
    callback=_assignments,
    help="Keep the best fraction F of GROUP's rows (e.g. --top Math=0.3). Repeatable.",
)
@click.option(
    "--top-default",
    "default_fraction",
    type=click.FloatRange(0, 1),
    metavar="F",
    help="Fraction kept of every group without its own --top (default: all of it).",
)
@click.option("--offset-by", metavar="COLUMN", help="Add a per-value offset from --offset to the score.")
@click.option(
    "--offset",
    "offsets",
    multiple=True,
    metavar="VALUE=DELTA",
    callback=_assignments,
    help="Adjusted score = score + DELTA for rows whose --offset-by column is VALUE (e.g. Magpie-Air=-0.1); "
    "every value must have one. Repeatable.",
)
@click.option("--chosen-score", metavar="COLUMN", help="Score of the chosen answer, for the bounds below.")
@click.option("--rejected-score", metavar="COLUMN", help="Score of the rejected answer, for the bounds below.")
@_bound("--min-chosen", "Drop rows whose chosen score is below X.")
@_bound("--max-chosen", "Drop rows whose chosen score is above X.")
@_bound("--min-rejected", "Drop rows whose rejected score is below X.")
@_bound("--max-rejected", "Drop rows whose rejected score is above X.")
@_bound("--min-margin", "Drop rows whose chosen minus rejected score is below X.")
@_bound("--max-margin", "Drop rows whose chosen minus rejected score is above X.")
@_bound("--min-length-ratio", "Drop rows whose chosen / rejected answer length (characters) is below X.")
@_bound("--max-length-ratio", "Drop rows whose chosen / rejected answer length (characters) is above X.")
@click.option("--rm-chosen", metavar="COLUMN", help="A reward model's score of the chosen answer (with --rm-rejected).")
@click.option(
    "--rm-rejected",
    metavar="COLUMN",
    help="A reward model's score of the rejected answer: keep rows it ranks strictly below --rm-chosen.",
)
@click.option(
    "--missing",
    type=click.Choice(["error", "drop"]),
    default="error",
    show_default=True,
    help="A null or NaN score that a rule reads: stop with an error, or drop the row (reason missing_score).",
)
@click.option(
    "--hold-gib",
    type=click.FloatRange(min=0),
    metavar="GIB",
    help="With a length ratio and no --dropped, the first pass reads the answer texts anyway: it holds up to GIB "
    "of the rows that pass the row rules (as read while they fit, then copied compactly), so the input is read "
    "once.  [default: a quarter of the memory; 0: read the input twice]",
)
@run_options
def select(inputs, out, dropped, report, split, layout, threads, batch_rows, bad_rows, allow_empty, quiet, hold_gib,
           engine, ray_address, **rules) -> None:  # fmt: skip
    """Keep rows by score: thresholds, margin, length ratio, reward-model agreement, top fraction per group.

    A row is dropped for the first rule it fails, in this order: missing_score, chosen_score, rejected_score,
    margin, rm_agreement, length_ratio, top_fraction. The top fraction ranks the rows left by the other rules;
    each group keeps ceil(F x rows) of them, ties to the earlier row.

    \b
    Examples:
      skyfilter select uf.jsonl --chosen-score metadata.score_chosen \\
          --rejected-score metadata.score_rejected --min-margin 1 --out kept.parquet --dropped dropped.parquet
      skyfilter select magpie.parquet --score armorm_mean --group-by task_category --top Math=0.3 \\
          --top "Coding & Debugging=0.3" --top-default 0.1 --offset-by generator \\
          --offset Magpie-Air=-0.1 --offset Magpie-Pro=-0.05 --offset Magpie-Ultra=0 --out selected.parquet
    """
    flags = {"fractions": "--top", "default_fraction": "--top-default", "offsets": "--offset"}
    try:
        options = SelectOptions(**rules)
    except ValueError as e:  # the message names the options' fields: here, their flags
        fields = "|".join(sorted(rules, key=len, reverse=True))
        named = re.sub(rf"\b({fields})\b", lambda m: flags.get(m[1], "--" + m[1].replace("_", "-")), str(e))
        raise click.ClickException(named) from None
    try:
        for column, readers in options.unread().items():
            named = ", ".join(flags.get(r, "--" + r.replace("_", "-")) for r in readers)
            raise click.ClickException(f"--{column.replace('_', '-')} {rules[column]} is read by no rule given: add "
                                       f"one of {named} (or leave it out)")  # fmt: skip
        _ray_only_files(engine, split)
        if engine == "ray":
            from skyfilter.ray import run_select as run_on_ray

            result = run_on_ray(list(inputs), options, out=out, dropped=dropped, report=report, bad_rows=bad_rows,
                                layout=layout, allow_empty=allow_empty, batch_rows=batch_rows, address=ray_address,
                                progress=not quiet)  # fmt: skip
        else:
            result = run_select(list(inputs), options, out=out, dropped=dropped, report=report, bad_rows=bad_rows,
                                split=split, layout=layout, allow_empty=allow_empty, threads=threads,
                                batch_rows=batch_rows, progress=False if quiet else None,
                                hold_bytes=None if hold_gib is None else int(hold_gib * 2**30))  # fmt: skip
    except _USER_ERRORS as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        click.echo(format_select_summary(result))


@main.command()
@click.option(
    "--recipe",
    required=True,
    metavar="NAME|FILE",
    help=f"A shipped recipe ({', '.join(shipped_recipes())}) or a recipe TOML file (copy a shipped one to start).",
)
@click.option("--out", required=True, metavar="DIR", help="A new folder for the curated set, manifest and report.")
@click.option(
    "--sample",
    is_flag=True,
    help="Offline: skyfilter's synthetic rows in each source's layout, and its demo benchmark for RewardBench.",
)
@click.option(
    "--data-dir",
    metavar="DIR",
    help="Read each source from DIR/<source name>.parquet (or .jsonl, .jsonl.gz, .json, .arrow) instead of the hub.",
)
@click.option(
    "--bench-file",
    "bench_files",
    multiple=True,
    metavar="FILE",
    help="Decontaminate against these benchmark files instead of the recipe's benchmarks. Repeatable.",
)
@click.option("--no-plots", is_flag=True, help="Write the report without its PNG plots.")
@click.option(
    "--bad-rows",
    type=click.Path(dir_okay=False),
    help="Write rows of --data-dir files that cannot be read (a JSON value of the wrong type) here, with "
    "input_file, input_row, line and reason, and go on (counted per source in the manifest); without it such a row "
    "is an error naming file, line and column.",
)
@click.option("--threads", type=click.IntRange(0), help="Worker threads (default: all cores, or SKYFILTER_THREADS).")
@click.option("--quiet", "-q", is_flag=True, help="No step lines.")
@engine_options
def curate(recipe, out, sample, data_dir, bench_files, no_plots, bad_rows, threads, quiet, engine, ray_address) -> None:
    """Build a curated preference set from a recipe: convert, dedup, select, decontaminate.

    Sources come from the Hugging Face hub (datasets.load_dataset), or from local copies (--data-dir), or from
    skyfilter's synthetic samples (--sample). OUT/data/ gets the pairs in the Skywork-Reward-Preference-80K
    schema (chosen, rejected as message lists; source), OUT/dropped.parquet every row that did not make it with
    its step and reason, OUT/manifest.json the recipe, inputs, and rows in/out/dropped per step and source, and
    OUT/report.md the summary tables and plots.

    \b
    Examples:
      skyfilter curate --recipe skywork-80k-v0.2 --sample --out sample80k/
      skyfilter curate --recipe skywork-80k-v0.2 --out data/skywork80k/
      skyfilter curate --recipe my-recipe.toml --data-dir mirror/ --bench-file rewardbench.parquet --out mine/
    """
    try:
        run_curate(
            load_recipe(recipe), out, sample=sample, data_dir=data_dir, bench=list(bench_files) or None,
            threads=threads, plots=not no_plots, bad_rows=bad_rows, log=(lambda _: None) if quiet else None,
            engine=engine, ray_address=ray_address,
        )  # fmt: skip
    except _USER_ERRORS as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--out", required=True, type=click.Path(), help="Write the pairs here (.parquet, .arrow or .jsonl).")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option("--prompt-column", help="Read prompts alone from this column (string or messages) instead of a layout.")
@_with_options([_SPLIT, _LAYOUT, _BATCH_ROWS, _BAD_ROWS, _ALLOW_EMPTY, _QUIET])
def convert(inputs, out, report, prompt_column, split, layout, batch_rows, bad_rows, allow_empty, quiet) -> None:
    """Write pairs of any known layout as the canonical pair table: prompt, chosen, rejected message lists.

    HH-RLHF transcripts, sharegpt and RMB rows, TRL's formats, HuggingFaceH4's prompt beside whole conversations:
    what skyrm train and skyrm score read (skyfilter.to_pairs on the command line). Every row is a pair
    of --out or a bad row (--bad-rows); pairs with a side without an answer are written and counted.

    \b
    Examples:
      skyfilter convert ../shared/data/prefs/hh_rlhf_harmless_base_test/test.jsonl.gz --out hh-pairs.parquet
      skyfilter convert rmb.jsonl.gz --out rmb-pairs.jsonl --bad-rows bad.jsonl --report convert.json
    """
    from skyfilter.convert import run_convert
    from skyfilter.report import format_convert_summary

    try:
        result = run_convert(list(inputs), out, report=report, bad_rows=bad_rows, split=split, layout=layout,
                             prompt_column=prompt_column, allow_empty=allow_empty, batch_rows=batch_rows,
                             progress=False if quiet else None)  # fmt: skip
    except _USER_ERRORS as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        click.echo(format_convert_summary(result))


if __name__ == "__main__":
    sys.exit(entry())
