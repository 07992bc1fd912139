"""The ``skyrm`` command. ``skyrm pipeline --sample``: curate the shipped sample with the Skywork recipe, train
the built-in tiny reward model on it and score it on the synthetic RewardBench-layout sample, offline, in about a
minute on a CPU. ``skyrm pipeline --recipe R --data-dir D --model M --bench rewardbench`` does the same on real
data. ``skyrm train`` trains alone and ``skyrm eval`` evaluates alone (the same commands as ``python -m
skyrm.train`` and ``python -m skyrm.eval``, the forms torchrun starts).
"""

from __future__ import annotations

import argparse
import sys
import time

from skyrm import __version__
from skyrm.requires import TRUST_HELP

# commands with their own command line, handed the arguments after their name: module, help
DELEGATED = {
    "train": ("skyrm.train", "train a Bradley-Terry reward model (skyrm train --help: every field's flag)"),
    "eval": ("skyrm.eval.__main__", "score a reward model on RewardBench (v1 or 2) or a pairwise set"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skyrm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--version", action="version", version=f"skyrm, version {__version__}")  # as skyfilter's
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, text) in DELEGATED.items():  # listed here; main() hands them their arguments before parsing
        commands.add_parser(name, help=text, add_help=False)
    p = commands.add_parser("pipeline", help="curate, train and evaluate in one go")
    p.add_argument("--sample", action="store_true", help="the shipped samples, offline (the main demo)")
    p.add_argument("--recipe", default="skywork-80k-v0.2", help="a shipped recipe name or a recipe file")
    p.add_argument("--data-dir", help="local source files for the recipe (instead of the hub)")
    p.add_argument("--model", default="tiny", help="tiny, smollm2, a model folder or a hub id")
    p.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    p.add_argument("--bench", help="rewardbench, rewardbench-2 or sample (default: sample with --sample)")
    p.add_argument("--bench-file", help="a local copy of the benchmark")
    p.add_argument("--max-steps", type=int, help="stop training after this many steps")
    p.add_argument("--held-out", type=float, default=0.1, help="share of the curated pairs kept for held-out accuracy")
    p.add_argument("--out", help="a new folder for everything (default: runs/pipeline-<time>)")
    p.add_argument("--two-stage", action="store_true", help="WildGuardMix's second stage first: a reward model "
                   "trained on the other sources scores its pairs, and those it ranks wrong are dropped")  # fmt: skip

    s = commands.add_parser(
        "score",
        help="a reward model's scores for every pair (or response) of a file",
        description=_doc("skyrm.score"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("input", help="pairs (parquet, jsonl, a dataset folder or a hub dataset id)")
    s.add_argument("--model", required=True, help="tiny, smollm2, a model folder (a skyrm training output's model/) "
                   "or a hub id")  # fmt: skip
    s.add_argument("--out", required=True, help="the scores, a .parquet file")
    s.add_argument("--responses", help="a list column: score each response of a row (the Magpie layout)")
    s.add_argument("--prompt-column", help="the prompt of --responses (default: instruction, else prompt)")
    s.add_argument("--keep-input", action="store_true", help="copy the input's columns into the output")
    s.add_argument("--batch-tokens", type=int, default=16_384, help="tokens per batch, padding included")
    s.add_argument("--max-length", type=int, help="keep the last N tokens of a longer sequence (default: the "
                   "model's max_position_embeddings)")  # fmt: skip
    s.add_argument("--shard-rows", type=int, default=4096, help="rows per shard: the unit of resuming")
    s.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (torchrun for several GPUs) or ray (a pool of actors, one GPU each)",
    )
    s.add_argument("--ray-address", help="the Ray cluster (default: RAY_ADDRESS, else a local instance)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)

    raw = argparse.RawDescriptionHelpFormatter
    v = commands.add_parser("serve", help="a reward model behind HTTP (OpenRLHF's /get_reward, /score, /compare)",
                            description=_doc("skyrm.serve"), formatter_class=raw)  # fmt: skip
    v.add_argument("--model", required=True, help="tiny, smollm2, a model folder (a skyrm training output's model/) "
                   "or a hub id")  # fmt: skip
    v.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    v.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every interface)")
    v.add_argument("--port", type=int, default=8000, help="the port to listen on")
    v.add_argument("--batch-tokens", type=int, default=16_384, help="tokens per batch, padding included")
    v.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request may wait for others to "
                   "share its batch")  # fmt: skip
    v.add_argument("--max-queue", type=int, default=4096, help="sequences waiting or being scored; a request "
                   "beyond it is answered 503")  # fmt: skip
    v.add_argument("--max-items", type=int, default=512, help="items, pairs or queries in one request (more: 413)")
    v.add_argument("--max-request-mb", type=float, default=16, help="the largest request body (more: 413)")
    v.add_argument("--max-length", type=int, help="keep the last N tokens of a longer sequence (default: the "
                   "model's max_position_embeddings)")  # fmt: skip
    v.add_argument("--bos", choices=("single", "official"), default="single",
                   help="single: exactly one BOS (as trained); official: as RewardBench's runner does")  # fmt: skip
    v.add_argument("--threads", type=int, help="the model's threads on the CPU (default: every core but one, "
                   "which is left to answering requests)")  # fmt: skip
    v.add_argument("--log-level", default="warning", help="uvicorn's log level")
    return parser


def _doc(module: str) -> str:
    import importlib

    return importlib.import_module(module).__doc__ or ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        import importlib

        module = importlib.import_module(DELEGATED[argv[0]][0])
        return module.main(argv[1:], prog=f"skyrm {argv[0]}")
    args = _parser().parse_args(argv)
    from skyrm.requires import MissingDependency, require

    try:
        require(f"skyrm {args.command}", "torch", "transformers")
    except MissingDependency as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "score":
        return _score(args)
    if args.command == "serve":
        return _serve(args)
    from skyrm.pipeline import run_pipeline

    out = args.out or time.strftime("runs/pipeline-%Y%m%d-%H%M%S")
    overrides = {"max_steps": args.max_steps} if args.max_steps else {}
    if args.trust_remote_code:
        overrides["trust_remote_code"] = True
    return _reported(lambda: run_pipeline(
        out, sample=args.sample, recipe=args.recipe, data_dir=args.data_dir, model=args.model,
        train_overrides=overrides, bench=args.bench, bench_file=args.bench_file, held_out=args.held_out,
        two_stage=args.two_stage))  # fmt: skip


def _reported(call) -> int:
    """0 when ``call()`` succeeds, else 1 with its one-line error: every error a user causes (a bad file, model,
    benchmark or option: the commands' errors derive from ValueError or OSError) or a missing package."""
    from skyrm.requires import MissingDependency

    try:
        call()
    except (ValueError, OSError, MissingDependency) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _score(args) -> int:
    from skyrm.score import ScoreOptions, score_pool

    def run() -> None:
        options = ScoreOptions(responses=args.responses, prompt_column=args.prompt_column,
                               token_budget=args.batch_tokens, max_length=args.max_length,
                               shard_rows=args.shard_rows, keep_input=args.keep_input)  # fmt: skip
        score_pool(args.input, args.model, args.out, options, engine=args.engine, ray_address=args.ray_address,
                   progress=not args.quiet, trust_remote_code=args.trust_remote_code)  # fmt: skip

    try:
        return _reported(run)
    except KeyboardInterrupt:  # the shards written so far stay: the same command goes on from them
        from skyrm.score import work_folder

        folder = work_folder(args.out)
        kept = len(list(folder.glob("shard-*.parquet"))) if folder.is_dir() else 0
        if kept:
            print(f"\ninterrupted: {kept:,} shard(s) of {args.out} kept in {folder}; the same command resumes from "
                  "them", file=sys.stderr)  # fmt: skip
        else:  # nothing scored yet: the work folder went with the run
            print(f"\ninterrupted before the first shard of {args.out} was scored: nothing was kept", file=sys.stderr)
        return 130


def _serve(args) -> int:
    from skyrm.requires import MissingDependency, require

    try:
        require("skyrm serve", "fastapi", "uvicorn")
    except MissingDependency as e:
        print(f"error: {e} (or, from a clone of this repository: pip install '.[serve]')", file=sys.stderr)
        return 2
    from skyrm.serve import serve

    return _reported(lambda: serve(
        args.model, trust_remote_code=args.trust_remote_code, host=args.host, port=args.port,
        batch_tokens=args.batch_tokens, max_length=args.max_length,
        bos=args.bos, max_wait=args.max_wait_ms / 1000, max_queue=args.max_queue, max_items=args.max_items,
        max_bytes=int(args.max_request_mb * 2**20), threads=args.threads, log_level=args.log_level))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
