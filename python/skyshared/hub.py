"""Local paths told apart from Hugging Face hub ids, hub look-ups that fail fast and quietly offline, and install
hints that work from a clone.

A name that does not exist locally is looked up on the hub only when it could be a hub id: ``owner/name`` with
no data-file suffix. A path-like name (``./x``, ``/x``, ``~/x``, ``a/b/c``, ``pairs.parquet``) that does not exist
is a local "no such file" at once (:func:`missing_path`). Around a hub look-up, :func:`hub_access` decides once
whether the hub can be reached (``HF_HUB_OFFLINE`` and friends, or a two-second probe of the hub's host); when it
cannot, the libraries are put in offline mode (one attempt from the cache instead of five retries of many
seconds), and their retry logs and warnings are not printed: the caller says what went wrong in one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import threading
import warnings
from collections.abc import Iterator

__all__ = ["hub_id", "looks_like_path", "missing_path", "hub_access", "install_hint"]

#: Suffixes of data, model and config files: a name ending in one is a file, never a hub id.
DATA_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".arrow", ".feather", ".ipc", ".gz",
                 ".txt", ".toml", ".yaml", ".yml", ".gguf", ".safetensors", ".bin", ".pt", ".md")  # fmt: skip
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_HOST = "huggingface.co"
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_HUB_LOGGERS = ("huggingface_hub", "datasets", "transformers", "urllib3", "httpx", "fsspec", "filelock")
_probed: bool | None = None

#: What installs each optional package from a clone of this repository (the package is not on PyPI).
_PACKAGES = {"datasets": "datasets", "torch": "torch", "transformers": "transformers", "accelerate": "accelerate",
             "gguf": "gguf", "tensorboard": "tensorboard", "yaml": "pyyaml"}  # fmt: skip


def install_hint(module: str) -> str:
    """The command that installs ``module``'s package: ``pip install NAME`` works anywhere; the extras of the
    project (``pip install '.[train]'``, ``'.[hub]'``) only from the clone, so they are not given."""
    return f"pip install {_PACKAGES.get(module, module)}"


def looks_like_path(spec: str) -> bool:
    """True for a name that can only be a local path: it starts with ``.``, ``/`` or ``~``, has a backslash or two
    slashes or more, or ends in a data-file suffix; ``owner/name`` and bare names may be hub ids."""
    text = str(spec)
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") >= 2:
        return True
    return text.lower().endswith(DATA_SUFFIXES) or ("/" in text and not _HUB_ID.match(text))


def hub_id(spec: str) -> bool:
    """True for a name that can be a hub dataset or model id: ``owner/name`` that is not path-like."""
    return bool(_HUB_ID.match(str(spec))) and not looks_like_path(spec)


def missing_path(spec: str) -> bool:
    """A path-like name (:func:`looks_like_path`) with nothing at it: say "no such file", do not ask the hub."""
    return looks_like_path(spec) and not os.path.exists(os.path.expanduser(str(spec)))


def _env_offline() -> bool:
    return any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE") for v in _OFFLINE_VARS)


def _reachable(host: str, timeout: float) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds (name resolution included, which
    sockets cannot time out: it runs in a thread that is left behind if it hangs)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def hub_offline() -> bool:
    """True when the hub cannot be reached: an offline variable is set, or the probe of its host failed (probed
    once per process)."""
    global _probed
    if _env_offline():
        return True
    if _probed is None:
        _probed = not _reachable(_HUB_HOST, 2.0)
    return _probed


def _go_offline() -> None:
    """Offline mode for the hub libraries: the variable for those imported later, their flags for those already
    imported (they read the variable once, at import)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    for module, attribute in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE"),
                              ("datasets.config", "HF_DATASETS_OFFLINE")):  # fmt: skip
        loaded = sys.modules.get(module)
        if loaded is not None and hasattr(loaded, attribute):
            setattr(loaded, attribute, True)


@contextlib.contextmanager
def hub_access() -> Iterator[bool]:
    """Around one hub look-up: when the hub cannot be reached, offline mode (one attempt, from the cache) with the
    hub libraries' logs (retry notices) and warnings silenced; online, nothing changes (a model load's own
    warnings, such as a newly initialised reward head, still show). Yields whether the hub was found offline,
    for the caller's message."""
    offline = hub_offline()
    if not offline:
        yield False
        return
    _go_offline()
    loggers = [logging.getLogger(name) for name in _HUB_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield True
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
