"""How long ``--model smollm2`` takes to load before its first step: what a training run read before (the package's
GGUF file, three times: tokenizer, config, weights) against what it reads now (the folder converted from it once),
and the one-time conversion.

    python bench/smollm2_load.py [--repeats 2]

Each load runs in its own process (imports included, as a run pays them; a process that only imports is timed too),
the conversion into a new temporary cache. The GGUF file is read once beforehand so that every side finds it in the
page cache. Prints seconds per side (the best of the repeats) and the ratio.
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # bench/select.py shadows the standard library's select module

import argparse
import os
import subprocess
import tempfile
import time

IMPORTS = """
import sys, torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
"""
#: What the trainer reads: the tokenizer, the config and the weights of a one-label classifier.
LOAD = (
    IMPORTS
    + """
source, kwargs = sys.argv[1], ({"gguf_file": sys.argv[2]} if len(sys.argv) > 2 else {})
AutoTokenizer.from_pretrained(source, **kwargs)
config = AutoConfig.from_pretrained(source, num_labels=1, **kwargs)
AutoModelForSequenceClassification.from_pretrained(source, config=config, dtype=torch.float32, **kwargs)
"""
)


def timed(args: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from skyrm.smollm2 import _gguf_file

    gguf = _gguf_file()
    gguf.read_bytes()  # into the page cache
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SKYRM_CACHE": cache}
        convert = "from skyrm.smollm2 import packaged_smollm2; print(packaged_smollm2()[0])"
        conversion = timed(["-c", convert], env)
        folder = subprocess.run([sys.executable, "-c", convert], env=env, check=True, capture_output=True,
                                text=True).stdout.strip()  # fmt: skip
        sides = {"GGUF file (before)": [LOAD, str(gguf.parent), gguf.name], "converted folder (now)": [LOAD, folder],
                 "the imports alone": [IMPORTS]}  # fmt: skip
        best = {name: min(timed(["-c", *how]) for _ in range(args.repeats)) for name, how in sides.items()}
    print(f"SmolLM2-135M-Instruct ({gguf.name}), {os.cpu_count()} cores; tokenizer + config + weights, best of "
          f"{args.repeats} processes each")  # fmt: skip
    for name, seconds in best.items():
        print(f"  {name:<24} {seconds:6.1f} s")
    print(f"  one-time conversion      {conversion:6.1f} s (its process, from the GGUF file to the saved folder)")
    before, now, imports = best.values()
    print(f"  before / now: {before / now:.1f}x; past the imports: {before - imports:.1f} s / {now - imports:.1f} s")


if __name__ == "__main__":
    main()
