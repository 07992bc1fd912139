"""``skyrm train --config FILE [--FIELD VALUE ...]`` (or ``python -m skyrm.train``, the form torchrun starts): train
a Bradley-Terry reward model.

Fixed flags that scripts rely on: ``--config``, ``--model`` (a path, a hub id, or ``tiny``), ``--data``,
``--eval-data``, ``--output-dir``, ``--max-steps``, ``--loss``, ``--resume``; every other field of
:class:`skyrm.config.TrainConfig` has its own flag. Writes ``OUTPUT_DIR/metrics.jsonl`` (one line per step),
``OUTPUT_DIR/model`` (Hugging Face format) and ``OUTPUT_DIR/summary.json``. An ``OUTPUT_DIR`` that already holds
files is refused unless ``--resume`` continues its run or ``--overwrite`` replaces it (:mod:`skyrm.run_folder`).
"""

from __future__ import annotations

import sys

from skyrm.requires import MissingDependency, require


def main(argv: list[str] | None = None, prog: str = "python -m skyrm.train") -> int:
    try:
        require(prog, "torch", "transformers")
    except MissingDependency as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from skyrm.config import ConfigError, parse_args
    from skyrm.trainer import train

    try:
        config = parse_args(argv, prog)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not config.data:
        print("error: give the training pairs with --data", file=sys.stderr)
        return 2
    try:
        train(config)
    except (ValueError, OSError, MissingDependency) as e:  # bad data, paths or installs: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
