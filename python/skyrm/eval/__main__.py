"""``skyrm eval --model DIR --bench rewardbench --out results.json`` (or ``python -m skyrm.eval``): score a reward
model on RewardBench (v1 or 2) or a pairwise set and print the leaderboard table.

Writes ``--out`` (the official results layout: model, per-subset scores, plus the section scores) and, beside
it, ``<out>.examples.jsonl`` (a header line, then one line per example: id, subset and the rewards), which
``--rescore FILE`` turns back into the same table without a model. Under torchrun
(``torchrun --nproc-per-node 8 -m skyrm.eval ...``) the processes share the scoring and rank 0 writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skyshared.outputs import Staged, check_outputs

from skyrm.data import check_bad_rows_path, write_bad_rows
from skyrm.eval.runner import (
    A_WINS,
    B_WINS,
    BENCHES,
    KINDS,
    SAMPLE,
    BenchmarkError,
    comparison_markdown,
    evaluate,
    examples_path,
    format_table,
    load_benchmark,
    load_model,
    rescore,
    results_files,
    table_of,
)
from skyrm.requires import TRUST_HELP, MissingDependency, require


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--model",
        help="a sequence-classification reward model: a folder, a hub id, smollm2, or "
        "tiny (the built-in random-init model, for a dry run)",
    )
    parser.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    parser.add_argument(
        "--bench",
        default="rewardbench",
        choices=[*sorted(BENCHES), SAMPLE],
        help="a named benchmark (sample: the project's synthetic rows in RewardBench's layout)",
    )
    parser.add_argument("--bench-file", help="a local copy of the benchmark, or a pairwise set (parquet, jsonl)")
    parser.add_argument("--format", choices=KINDS, help="the layout of --bench-file (default: that of --bench)")
    parser.add_argument(
        "--prompt-column",
        default="prompt",
        help="the prompt of a pairwise set; comma-separated columns (instruction,input) are joined "
        "by a blank line, the empty ones left out (Alpaca's and PandaLM's instruction and input)",
    )
    parser.add_argument("--a-column", default="response_a")
    parser.add_argument("--b-column", default="response_b")
    parser.add_argument("--label-column", default="label", help="says which response is better (A>B, B>A, ...)")
    parser.add_argument("--a-wins", help=f"comma-separated labels meaning response A is better (default: "
                        f"{','.join(A_WINS)}); labels in neither list are ties, skipped and counted")  # fmt: skip
    parser.add_argument("--b-wins", help=f"comma-separated labels meaning response B is better (default: "
                        f"{','.join(B_WINS)}); give both or neither")  # fmt: skip
    parser.add_argument("--subset-column", help="groups the pairwise rows (default: one group)")
    parser.add_argument("--out", help="results.json (and results.examples.jsonl beside it)")
    parser.add_argument("--rescore", metavar="FILE", help="recompute the table from a per-example file")
    parser.add_argument("--compare", metavar="FILE.md", help="a markdown table of this model among published rows")
    parser.add_argument("--xstest-weights", default="current", choices=["current", "pre-2024-09"])
    parser.add_argument(
        "--bos",
        default="single",
        choices=["single", "official"],
        help="official: tokenize as the official runner (a second BOS where the template writes one)",
    )
    parser.add_argument("--max-length", type=int, default=None, help="keep the last N tokens of longer sequences")
    parser.add_argument("--batch-tokens", type=int, default=16_384, help="tokens per batch, padding included")
    parser.add_argument("--limit", type=int, help="score only the first N rows (for a quick look)")
    parser.add_argument(
        "--bad-rows",
        metavar="FILE",
        help="write rows of --bench-file that cannot be read (a JSON value of the wrong type) here (.jsonl or "
        ".parquet) and score the others; without it such a row is an error naming file, line and column",
    )
    parser.set_defaults(prog=prog)  # the name a missing package's error gives
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m skyrm.eval") -> int:
    """Under torchrun, the processes share the scoring and rank 0 prints and writes."""
    import os

    args = _parser(prog).parse_args(argv)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if args.rescore:  # nothing to share: rank 0 alone does it
            return _main(args, True) if os.environ.get("RANK", "0") == "0" else 0
        from skyrm.distributed import start, stop

        runtime = start()
        completed = False
        try:
            result = _main(args, runtime.main)
            completed = True
            return result
        finally:
            stop(runtime, completed)
    return _main(args, True)


def _labels(text: str | None) -> tuple[str, ...] | None:
    """``--a-wins`` / ``--b-wins``: the comma-separated labels, or None for the defaults."""
    return tuple(label.strip() for label in text.split(",")) if text else None


def _outputs(args) -> dict[str, str | Path | None]:
    """The files this run writes, by flag (the per-example file goes beside --out when a model is scored)."""
    examples = examples_path(Path(args.out)) if args.out and not args.rescore else None
    bad_rows = args.bad_rows if not args.rescore else None
    return {"--out": args.out, "--out's examples file": examples, "--compare": args.compare, "--bad-rows": bad_rows}


def _main(args, writes: bool) -> int:
    try:
        # before any work: no output on an input (the benchmark, the per-example file) or on another output, and
        # every output's folder writable
        check_outputs(_outputs(args), [args.bench_file, args.rescore, args.model])
        check_bad_rows_path(None if args.rescore else args.bad_rows)
        if args.rescore:
            records, kind, name = rescore(args.rescore)
            skipped, bad = 0, []
        else:
            if not args.model:
                print("error: give --model (or --rescore FILE)", file=sys.stderr)
                return 2
            columns = {"prompt": args.prompt_column, "a": args.a_column, "b": args.b_column,
                       "label": args.label_column, "subset": args.subset_column,
                       "a_wins": _labels(args.a_wins), "b_wins": _labels(args.b_wins)}  # fmt: skip
            bench = load_benchmark(args.bench, args.bench_file, args.format, columns, keep_bad=bool(args.bad_rows))
            if bench.skipped and writes:
                counts = ", ".join(f"{label!r} {n:,}" for label, n in sorted(bench.skipped_labels.items()))
                limited = (f"; --limit {args.limit:,} scores the first {args.limit:,} of the other {len(bench):,}"
                           if args.limit and args.limit < len(bench) else "")  # fmt: skip
                print(f"{bench.skipped:,} row(s) of the file with neither response better skipped (labels: {counts})"
                      f"{limited}", file=sys.stderr)  # fmt: skip
            if args.limit:
                for field in ("prompts", "completions", "num_correct", "subsets", "ids"):
                    setattr(bench, field, getattr(bench, field)[: args.limit])
            require(args.prog, "torch", "transformers")
            model, tokenizer = load_model(args.model, args.trust_remote_code)
            records = evaluate(model, tokenizer, bench, token_budget=args.batch_tokens, bos=args.bos,
                               max_length=args.max_length)  # fmt: skip
            kind, name, skipped, bad = bench.kind, args.model, bench.skipped, bench.bad_rows
        table = table_of(records, kind, args.xstest_weights)
        comparison = comparison_markdown(name, table) if args.compare and writes else None
    except (BenchmarkError, ValueError, OSError, MissingDependency) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not writes:
        return 0
    print(format_table(table))
    files = {}
    if args.out:
        files = results_files(Path(args.out), name, table, kind, None if args.rescore else records, args.bos, skipped,
                              len(bad))  # fmt: skip
    if comparison is not None:
        files[Path(args.compare)] = comparison
    try:
        with Staged() as staged:  # every output appears, or none
            for path, text in files.items():
                staged.write_text(path, text)
            if args.bad_rows and not args.rescore:
                write_bad_rows(staged, args.bad_rows, [(args.bench_file or args.bench, bad)])
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    written = [path for path in (args.out, args.compare) if path and Path(path) in files]
    if args.bad_rows and not args.rescore:
        print(f"\n{len(bad)} bad row(s) could not be read: wrote {args.bad_rows}")
    if written:
        print("\n" + "\n".join(f"wrote {path}" for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
