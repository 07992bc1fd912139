"""What a newcomer's first run can miss, said in one line: an optional package (which extra installs it), a model
the hub cannot serve (how to point at a local copy), or a GPU (what runs instead).
"""

from __future__ import annotations

import contextlib
import importlib
import os

from skyshared.hub import hub_access, install_hint, missing_path

__all__ = ["MissingDependency", "ModelLoadError", "require", "pretrained", "first_line", "TRUST_HELP"]

#: The help of every command's ``--trust-remote-code``.
TRUST_HELP = "run the Python code the model ships (auto_map in its config): only for code you have read"


class MissingDependency(ImportError):
    """An optional package is not installed; the message names the pip command that installs it."""


class ModelLoadError(OSError):
    """A model or tokenizer that could not be loaded; the message names it and how to use a local copy."""


def require(purpose: str, *modules: str) -> None:
    """Imports ``modules`` or raises :class:`MissingDependency` naming the first missing one and its extra."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            message = f"{purpose} needs the `{name}` package, which is not installed: {install_hint(name)}"
            raise MissingDependency(message) from None


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (hub errors run to many lines), or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def pretrained(load, name: str, what: str = "model", **kwargs):
    """``load(name, **kwargs)`` (a ``from_pretrained``), with a failure to find ``name`` (no network, no cache, a
    typo, a gated repository) turned into one message that names it and says how to use a local copy. A path-like
    name with nothing at it is "no such folder" at once; offline, the hub is tried once, quietly. The model's own
    code (a config's ``auto_map``) runs only with ``trust_remote_code=True``: without it, never a prompt (as
    transformers asks on a terminal when it is not given), but one line naming ``--trust-remote-code``."""
    kwargs.setdefault("trust_remote_code", False)
    if missing_path(name):
        raise ModelLoadError(f"{name}: no such folder (the {what} is read from a local folder, or a hub id owner/name)")
    local = os.path.exists(name)  # a folder: no hub, so no probe of it
    with contextlib.nullcontext(False) if local else hub_access() as offline:
        try:
            return load(name, **kwargs)
        except (OSError, ValueError) as e:  # ValueError: a name that is neither a folder nor a valid hub id
            if "trust_remote_code" in str(e) and not kwargs["trust_remote_code"]:
                raise ModelLoadError(
                    f"{name}: the {what} ships its own Python code (auto_map in its config), which runs only with "
                    "--trust-remote-code: read that code first, then pass the flag"
                ) from None
            if local and isinstance(e, ValueError):
                raise
            if local:
                raise ModelLoadError(f"{name}: could not load the {what} from this folder ({first_line(e)})") from None
            where = "its local cache (the hub cannot be reached)" if offline else "the Hugging Face hub or its cache"
            error = e
    raise ModelLoadError(
        f"could not load the {what} {name!r}: not a local folder, and {where} "
        f"could not provide it ({first_line(error)}). Without network, download it on a machine that has one "
        f"(`hf download {name} --local-dir DIR`), copy DIR here and pass its path instead of {name!r}; or set "
        "HF_HOME to a cache that holds it (HF_HUB_OFFLINE=1 skips the network retries)"
    ) from None
