"""Benchmark: what the checkpoint checksums cost (skyrm.checkpoint: the size and CRC-32 of every file, computed after
the save and verified before a resume).

Model: a random-init Llama reward model of SmolLM2-135M's shape (no download), fp32 on the CPU, AdamW after one step
(so the checkpoint holds the weights and both moments: about 1.6 GB). Times, in one process, a whole
``checkpoint.save`` (DCP's write, the random-number state, the CRC-32s, the marker), the CRC-32s alone over the
files just written (in the page cache), ``checkpoint.verify`` and ``checkpoint.load``.

Run: python bench/checkpoint_crc.py [--layers 30] [--folder /tmp/skyrm-crc]
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select` module: the script's folder goes last on the path.
sys.path.append(sys.path.pop(0))

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=30, help="decoder layers (SmolLM2-135M: 30)")
    parser.add_argument("--folder", help="where the checkpoint goes (default: a temporary folder, removed)")
    args = parser.parse_args()

    import torch
    from skyrm import checkpoint
    from skyrm.distributed import start, stop
    from transformers import AutoModelForSequenceClassification, LlamaConfig

    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=args.layers,
                         num_attention_heads=9, num_key_value_heads=3, num_labels=1, pad_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer.step()
    root = Path(args.folder or tempfile.mkdtemp(prefix="skyrm-crc-"))
    runtime = start()
    try:
        started = time.perf_counter()
        folder = checkpoint.save(root, 1, model, optimizer, {}, runtime)
        save = time.perf_counter() - started
        files = [p for p in folder.iterdir() if p.name != checkpoint.MARKER]
        size = sum(p.stat().st_size for p in files)
        started = time.perf_counter()
        for path in files:
            checkpoint._crc32(path)
        crc = time.perf_counter() - started
        started = time.perf_counter()
        info = checkpoint.verify(folder, runtime)
        verify = time.perf_counter() - started
        started = time.perf_counter()
        checkpoint.load(folder, info, model, optimizer, {}, runtime)
        load = time.perf_counter() - started
    finally:
        stop(runtime)
        if args.folder is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"checkpoint: {len(files)} files, {size / 1e9:.2f} GB")
    print(f"save (all of it): {save:.2f} s; of which the CRC-32s: {crc:.2f} s ({size / crc / 1e9:.2f} GB/s, "
          f"{crc / save:.0%} of the save)")  # fmt: skip
    print(f"verify before a resume: {verify:.2f} s; load: {load:.2f} s (verify is {verify / (verify + load):.0%} "
          "of a resume's reading)")  # fmt: skip


if __name__ == "__main__":
    main()
