"""Connecting to Ray for one command (skyfilter's ray engine, ``skyrm score --engine ray``): the cluster at
``--ray-address`` (or ``RAY_ADDRESS``), else a local Ray instance started for the run and stopped after it; a
program that already called ``ray.init`` keeps its own."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

__all__ = ["EngineError", "import_ray", "ray_session"]


class EngineError(ValueError):
    """The ray engine cannot run (Ray missing, a cluster that cannot be reached); one line."""


def import_ray(command: str = "the ray engine"):
    """The ``ray`` module with Ray Data, or a one-line error naming the command that needs it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data comes with the `data` extra only
    except ImportError:
        raise EngineError(f"{command} with --engine ray needs Ray Data: pip install 'ray[data]'") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, *, command: str = "the ray engine", progress: bool = False) -> Iterator:
    """Ray, connected for the block. ``address``: a cluster (``ray://...``, ``HOST:PORT`` or ``auto``); None reads
    ``RAY_ADDRESS``, and without it a local instance is started for the block and stopped after it."""
    ray = import_ray(command)
    started = False
    if not ray.is_initialized():
        # "local": a new instance, never a cluster some other program started on this machine
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=True,
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            where = "a new local instance" if address == "local" else address
            raise EngineError(f"{command}: cannot connect to Ray at {where} ({first})") from None
        started = True
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    context.print_on_execution_start = False
    # Ray's own warnings (progress bars off, idle CPUs) are not the user's business on success; a failure surfaces
    # as an exception.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
