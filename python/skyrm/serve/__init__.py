"""``skyrm serve``: a reward model behind HTTP, with dynamic batching.

  POST /get_reward  OpenRLHF's remote reward model: {"query": [...]} -> {"rewards": [...], "scores": [...]}
                    (point OpenRLHF's --remote_rm_url at http://HOST:PORT/get_reward)
  POST /score       {"items": [{"messages": [...]} or {"prompt": ..., "response": ...}]} -> {"scores": [...]}
  POST /compare     {"pairs": [{"prompt": ..., "response_a": ..., "response_b": ...}]} -> scores, margins, preferred
  GET  /health, GET /metrics (requests, batch sizes, latency percentiles), GET /docs (the API)

Concurrent requests are coalesced into length-sorted batches under --batch-tokens, waiting at most --max-wait-ms
for company, and scored on one worker thread, so the server keeps answering while the model runs. The scores are
those of skyrm.eval and skyrm score for the same text (the chat template, exactly one BOS, the end kept over
--max-length). Limits: --max-queue (503 beyond it), --max-items and --max-request-mb (413). It listens on
127.0.0.1 unless --host says otherwise. Code: skyrm/serve/ (protocol, batcher, scorer, metrics, app).
"""

from __future__ import annotations

import errno
import os
import socket
import sys

__all__ = ["serve", "cpu_threads"]


def cpu_threads() -> int:
    """The model's threads on the CPU: every core this process may use but one, which is left to the event loop
    (the model's OpenMP threads wait by spinning: on every core, they starve the loop; measured on 2 cores, the
    tiny model's batches took 16x as long with 2 threads as with 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    return max(1, cores - 1)


def serve(model: str, *, trust_remote_code: bool = False, host: str = "127.0.0.1", port: int = 8000,
          batch_tokens: int = 16_384, max_length: int | None = None, bos: str = "single", max_wait: float = 0.005,
          max_queue: int = 4096, max_items: int = 512, max_bytes: int = 16 * 2**20, threads: int | None = None,
          log_level: str = "warning") -> None:  # fmt: skip
    """Loads ``model`` (:func:`skyrm.eval.runner.load_model`: a folder, a hub id, ``smollm2`` or ``tiny``) and
    serves it on ``host``:``port`` until interrupted. On the CPU the model gets ``threads`` threads (default:
    :func:`cpu_threads`). A model that ships its own code needs ``trust_remote_code``."""
    import uvicorn

    from skyrm.eval.runner import load_model
    from skyrm.serve.app import ServeSettings, build_app
    from skyrm.serve.scorer import Scorer

    _check_address(host, port)  # before the model loads: a port in use is one line, at once
    loaded, tokenizer = load_model(model, trust_remote_code)
    if next(loaded.parameters()).device.type == "cpu":
        import torch

        torch.set_num_threads(threads or cpu_threads())
    scorer = Scorer(loaded, tokenizer, batch_tokens=batch_tokens, max_length=max_length, bos=bos)
    settings = ServeSettings(model=model, max_wait=max_wait, max_queue=max_queue, max_items=max_items,
                             max_bytes=max_bytes)  # fmt: skip
    app = build_app(scorer, settings)
    print(f"skyrm serve: {model} on http://{host}:{port} (POST /get_reward, /score, /compare; GET /health, "
          f"/metrics; the API at /docs)", file=sys.stderr, flush=True)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


def _check_address(host: str, port: int) -> None:
    """An OSError of one line where the server could not listen on ``host``:``port`` (a port in use, an address not
    this machine's): each of its addresses is bound once and let go, as uvicorn binds them after the model loads."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not 0 <= port <= 65535:
        raise OSError(f"cannot listen on {where}: a port is a number from 0 to 65535")
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as e:
        raise OSError(f"cannot listen on {where}: {e.strerror or e}") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as e:
                hint = "choose another --port" if e.errno == errno.EADDRINUSE else "check --host"
                raise OSError(f"cannot listen on {where}: {e.strerror} ({hint})") from None
