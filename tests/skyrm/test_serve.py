"""``skyrm serve``: one real server per module (``python -m skyrm.cli serve`` on 127.0.0.1, a tiny random-init model
saved to a folder) driven over HTTP. OpenRLHF's remote reward-model protocol, scores equal to offline scoring
(1e-5, fp32), concurrent clients each getting their own scores, overload answered 503 with the server still
answering afterwards, bad requests answered 400 naming the field, /health and /metrics; the batcher's
isolation and coalescing on their own; and the one-line error when the serve packages are missing."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

TOL = 1e-5
MAX_QUEUE, MAX_ITEMS, MAX_MB = 127, 64, 1  # room for 64 concurrent clients' 127 sequences, not for 64 pairs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """The base URL of a server over the tiny model, small limits so that overload is cheap to reach."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("serve-log") / "server.log").open("w+")
    command = [sys.executable, "-m", "skyrm.cli", "serve", "--model", str(tiny_model_dir), "--port", str(port),
               "--max-queue", str(MAX_QUEUE), "--max-items", str(MAX_ITEMS), "--max-request-mb", str(MAX_MB),
               "--max-wait-ms", "20"]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TQDM_DISABLE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"the server exited with {process.returncode}:\n{log.read()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health within 120 s"
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def offline(tiny_model_dir):
    """Offline scoring of the same model: ``offline.items(prompts_and_responses)``, ``offline.ids(sequences)``."""
    from skyrm.eval.runner import Encoder, load_model, score_sequences

    model, tokenizer = load_model(str(tiny_model_dir))

    class Offline:
        encode = Encoder(tokenizer, max_length=model.config.max_position_embeddings)

        @staticmethod
        def ids(sequences: list[list[int]]) -> list[float]:
            return score_sequences(model, sequences, 16_384, model.config.pad_token_id, "cpu", progress=False)

        def items(self, pairs) -> list[float]:
            return self.ids([self.encode(p, r) for p, r in pairs])

    Offline.tokenizer = tokenizer
    return Offline()


def _post(url: str, path: str, body, timeout: float = 60) -> httpx.Response:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(url + path, content=data, headers={"Content-Type": "application/json"}, timeout=timeout)


def _close(values, expected) -> None:
    assert len(values) == len(expected)
    assert max(abs(a - b) for a, b in zip(values, expected, strict=True)) <= TOL, (values, expected)


# ------------------------------------------------------------------------------------------------------ protocol


def test_get_reward_answers_openrlhf_requests(server, offline):
    """The request as OpenRLHF's SingleTurnAgentExecutor builds it: the query is the policy's prompt ids and
    generated ids decoded with the special tokens; one query a request (the current client) or several (the
    older RemoteRewardModel client); prompts and labels beside it. The answer: rewards, scores (which its dynamic
    filtering reads) and extra_logs (each value read as a tensor of one value)."""
    tokenizer = offline.tokenizer
    cases = [("What is the capital of France?", "Paris."), ("Write a haiku about rain.", "Drops tap the tin roof"),
             ("2+2?", "4")]  # fmt: skip
    queries = []
    for prompt, answer in cases:
        prompt_text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False)
        prompt_text += "<|assistant|>\n"  # the generation prompt of the tiny template's format
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        action_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        queries.append(tokenizer.decode(prompt_ids + action_ids, skip_special_tokens=False))
    # OpenRLHF's serve_rm tokenizes a query without adding special tokens: its BOS is the one the text carries
    expected = offline.ids([tokenizer(q, add_special_tokens=False)["input_ids"] for q in queries])
    assert all(q.startswith(tokenizer.bos_token) for q in queries)

    for i, query in enumerate(queries):  # the current client: one query per request
        payload = {"query": [query], "prompts": [cases[i][0]], "labels": [None]}
        answer = _post(server, "/get_reward", payload)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"rewards", "scores", "extra_logs"}
        _close(body["rewards"], expected[i : i + 1])
        assert body["scores"] == body["rewards"] and isinstance(body["extra_logs"], dict)
        for value in body["extra_logs"].values():
            torch.tensor([value])
    batched = _post(server, "/get_reward", {"query": queries, "prompts": [c[0] for c in cases], "labels": ["a"] * 3})
    _close(batched.json()["rewards"], expected)
    # a query without its BOS gets one, as the model was trained: the same reward
    again = _post(server, "/get_reward", {"query": [queries[0][len(tokenizer.bos_token) :]]})
    _close(again.json()["rewards"], expected[:1])
    # the pads of a padded batch decoded with its special tokens, and repeated EOS, go as OpenRLHF's serve_rm takes
    # them away (the reward was read at a pad)
    pad, eos = tokenizer.pad_token, tokenizer.eos_token
    padded = [2 * pad + queries[0], queries[1] + 3 * pad, queries[2] + eos + pad + eos]
    _close(_post(server, "/get_reward", {"query": padded}).json()["rewards"], expected)


def test_score_and_compare_equal_offline_scoring(server, offline):
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                    {"role": "user", "content": "Name a prime."}]  # fmt: skip
    long_answer = "word " * 500  # 2,500 bytes: over the tiny model's 2,048 positions, so its end is kept
    pairs = [("Name a prime.", "7"), ("Name a prime.", "Nine"), (conversation, "Seven."), ("Say it long.", long_answer)]
    expected = offline.items(pairs)

    items = [{"prompt": p, "response": r} for p, r in pairs]
    items.append({"messages": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "7"}]})
    answer = _post(server, "/score", {"items": items})
    assert answer.status_code == 200, answer.text
    _close(answer.json()["scores"], [*expected, expected[0]])

    both = [{"prompt": "Name a prime.", "response_a": "7", "response_b": "Nine"},
            {"prompt": "Name a prime.", "response_a": "Nine", "response_b": "7"}]  # fmt: skip
    compare = _post(server, "/compare", {"pairs": both})
    body = compare.json()
    _close(body["scores_a"], [expected[0], expected[1]])
    _close(body["scores_b"], [expected[1], expected[0]])
    _close(body["margins"], [expected[0] - expected[1], expected[1] - expected[0]])
    better = "a" if expected[0] > expected[1] else "b"
    assert body["preferred"] == [better, {"a": "b", "b": "a"}[better]]


def test_concurrent_clients_each_get_their_own_scores(server, offline):
    """64 clients at once, each with its own items (1 to 3, of different lengths): every answer holds exactly its
    request's scores, and the server coalesced requests into shared batches."""
    requests = [[(f"Client {c} asks question {k}?", f"Answer {k} for client {c}. " * (1 + (c * 7 + k) % 9))
                 for k in range(1 + c % 3)] for c in range(64)]  # fmt: skip
    expected = offline.items([pair for request in requests for pair in request])
    before = httpx.get(f"{server}/metrics").json()["batches"]["count"]

    async def client(session, pairs):
        body = {"items": [{"prompt": p, "response": r} for p, r in pairs]}
        return await session.post("/score", json=body)

    async def all_clients():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server, timeout=60, limits=limits) as session:
            return await asyncio.gather(*(client(session, r) for r in requests))

    answers = asyncio.run(all_clients())
    at = 0
    for request, answer in zip(requests, answers, strict=True):
        assert answer.status_code == 200, answer.text
        _close(answer.json()["scores"], expected[at : at + len(request)])
        at += len(request)
    batches = httpx.get(f"{server}/metrics").json()["batches"]["count"] - before
    assert batches < len(requests), f"{batches} batches for {len(requests)} concurrent requests: none coalesced"


def test_overload_answers_503_then_the_server_still_answers(server, offline):
    """32 requests of 64 items at once against a queue of 127 sequences: some are refused with 503 and a
    Retry-After, the others scored in full; afterwards the server answers as before."""
    items = [{"prompt": f"Question {i}?", "response": "An answer. " * 8} for i in range(MAX_ITEMS)]

    async def flood():
        async with httpx.AsyncClient(base_url=server, timeout=60, limits=httpx.Limits(max_connections=32)) as s:
            return await asyncio.gather(*(s.post("/score", json={"items": items}) for _ in range(32)))

    answers = asyncio.run(asyncio.wait_for(flood(), 90))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) > 0 and statuses.count(200) > 0, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["Retry-After"] == "1" and "queue is full" in answer.json()["error"]
        else:
            assert len(answer.json()["scores"]) == MAX_ITEMS
    assert httpx.get(f"{server}/health").json()["queue"]["pending_sequences"] == 0
    after = _post(server, "/score", {"items": [{"prompt": "Name a prime.", "response": "7"}]})
    _close(after.json()["scores"], offline.items([("Name a prime.", "7")]))


def test_the_requests_of_clients_that_went_away_are_not_scored(server):
    """Two clients send long requests and time out (as an RL trainer's client does before it retries): the one whose
    batch is already on the model is scored, the other leaves the queue unscored (it was scored for nobody, and
    later requests waited behind it); the next request is answered."""
    # 60 queries of 2,048 tokens: seconds of scoring here, so that the second request is still queued when its
    # client is seen to be gone (0.4 s, then at most DISCONNECT_POLL_S)
    query = "<s><|user|>\nq</s>\n<|assistant|>\n" + "word " * 600
    before = httpx.get(f"{server}/metrics").json()["batches"]["sequences"]

    async def impatient():
        async with httpx.AsyncClient(base_url=server, timeout=0.4) as session:
            return await asyncio.gather(*(session.post("/get_reward", json={"query": [query] * 60}) for _ in range(2)),
                                        return_exceptions=True)  # fmt: skip

    assert all(isinstance(a, httpx.TimeoutException) for a in asyncio.run(impatient()))
    answer = _post(server, "/score", {"items": [{"prompt": "Name a prime.", "response": "7"}]})
    assert answer.status_code == 200 and len(answer.json()["scores"]) == 1
    deadline = time.monotonic() + 60
    while (metrics := httpx.get(f"{server}/metrics").json())["queue"]["pending_sequences"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert metrics["batches"]["sequences"] - before <= 60 + 1  # one request's 60 at most, and the last one's
    assert metrics["endpoints"]["/get_reward"]["by_status"].get("499", 0) >= 1


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/score", {"items": [{"prompt": "p"}]}, "items[0].response"),
        ("/score", {"items": [{"prompt": "p", "response": 3}]}, "items[0].response"),
        ("/score", {"items": [{"prompt": "p", "respones": "r"}]}, "items[0].respones"),
        ("/score", {"items": [{"messages": [{"role": "user"}]}]}, "items[0].messages[0].content"),
        ("/score", {"items": [{"messages": []}]}, "items[0].messages"),
        ("/score", {"item": []}, "items"),
        ("/score", b'{"items": [', "not valid JSON"),
        ("/score", b"[1, 2]", "the body"),
        ("/compare", {"pairs": [{"prompt": "p", "response_a": "a"}]}, "pairs[0].response_b"),
        ("/get_reward", {"query": "one text"}, "query"),
        ("/get_reward", {"prompts": ["p"]}, "query"),
        ("/get_reward", {"query": ["a", "b"], "labels": [None]}, "labels"),
    ],
)
def test_bad_requests_answer_400_naming_the_field(server, path, body, field):
    answer = _post(server, path, body)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["error"], answer.json()


def test_requests_over_the_limits_answer_413(server):
    many = {"items": [{"prompt": "p", "response": "r"}] * (MAX_ITEMS + 1)}
    answer = _post(server, "/score", many)
    assert answer.status_code == 413 and "--max-items" in answer.json()["error"]
    big = {"query": ["x" * (MAX_MB * 2**20)]}
    answer = _post(server, "/get_reward", big)
    assert answer.status_code == 413 and "--max-request-mb" in answer.json()["error"]
    pairs = {"pairs": [{"prompt": "p", "response_a": "a", "response_b": "b"}] * (MAX_ITEMS + 1)}
    answer = _post(server, "/compare", pairs)
    assert answer.status_code == 413 and answer.json()["error"].startswith("pairs: 65 in one request")
    pairs = {"pairs": pairs["pairs"][:64]}  # 128 sequences: never admitted to a queue of 127, so not a 503
    answer = _post(server, "/compare", pairs)
    assert (
        answer.status_code == 413
        and "128 sequences in one request, over the server's --max-queue" in (answer.json()["error"])
    )

    def chunks():  # no Content-Length: the size is counted as the body arrives
        yield b'{"query": ["'
        for _ in range(MAX_MB * 16 + 1):
            yield b"x" * 2**16
        yield b'"]}'

    answer = httpx.post(f"{server}/get_reward", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in answer.request.headers and answer.status_code == 413
    assert "--max-request-mb" in answer.json()["error"]
    assert httpx.get(f"{server}/health").status_code == 200


def test_the_server_listens_on_the_loopback_only(server):
    """Without --host: bound to 127.0.0.1, so no other machine reaches it (Linux's table of listening sockets)."""
    tcp = Path("/proc/net/tcp")
    if not tcp.exists():
        pytest.skip("no /proc/net/tcp here")
    port = int(server.rsplit(":", 1)[1])
    listening = [line.split()[1] for line in tcp.read_text().splitlines()[1:] if line.split()[3] == "0A"]
    mine = [address.split(":")[0] for address in listening if int(address.split(":")[1], 16) == port]
    assert mine == ["0100007F"]  # 127.0.0.1, little-endian hex
    from skyrm.cli import _parser

    assert _parser().parse_args(["serve", "--model", "m"]).host == "127.0.0.1"


def test_health_and_metrics(server):
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["queue"]["max_queue"] == MAX_QUEUE
    _post(server, "/score", {"items": [{"prompt": "p", "response": "r"}]})
    metrics = httpx.get(f"{server}/metrics").json()
    score = metrics["endpoints"]["/score"]
    assert score["by_status"]["200"] >= 1 and score["sequences"] >= 1
    assert 0 < score["latency_ms"]["p50"] <= score["latency_ms"]["p90"] <= score["latency_ms"]["p99"]
    batches = metrics["batches"]
    assert batches["count"] >= 1 and sum(batches["histogram"].values()) == batches["count"]
    assert batches["sequences_per_batch"]["p50"] >= 1 and batches["tokens_per_batch"]["p99"] >= 1
    assert metrics["queue"] == {"pending_sequences": 0, "max_queue": MAX_QUEUE}
    assert httpx.get(f"{server}/nowhere").json() == {"error": "Not Found"}


# ----------------------------------------------------------------------------------------------- without a server


def test_the_batcher_keeps_each_jobs_scores_and_survives_a_failed_batch():
    from skyrm.serve.batcher import Batcher, QueueFull

    batches = []

    def score(sequences):
        if any(s[0] < 0 for s in sequences):
            raise RuntimeError("bad batch")
        return [float(s[0]) for s in sequences]

    jobs = [[[10 * j + k, 0] for k in range(1 + j % 3)] for j in range(20)]  # 1 to 3 sequences of 2 tokens each
    total = sum(len(job) for job in jobs)

    async def run():
        batcher = Batcher(score, 64, max_wait=0.05, max_queue=total, on_batch=lambda n, t, s: batches.append(n))
        batcher.start()
        try:
            for job in jobs:
                batcher.admit(len(job))
            with pytest.raises(QueueFull):
                batcher.admit(1)
            results = await asyncio.gather(*(batcher.scores(len(job), lambda job=job: job) for job in jobs))
            for job, result in zip(jobs, results, strict=True):
                assert result == [float(s[0]) for s in job]
            batcher.admit(1)
            with pytest.raises(RuntimeError, match="bad batch"):
                await batcher.scores(1, lambda: [[-1, 0]])
            batcher.admit(1)
            assert await batcher.scores(1, lambda: [[5, 0]]) == [5.0]
            assert batcher.pending == 0
        finally:
            await batcher.stop()

    asyncio.run(run())
    assert batches[0] > 1 and max(batches) * 2 <= 64  # coalesced, and under the token budget


def test_missing_serve_packages_name_the_extra(monkeypatch, capsys):
    from skyrm.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now fails
    assert main(["serve", "--model", "whatever"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "`fastapi`" in err and "pip install '.[serve]'" in err


def test_a_port_in_use_is_one_line_before_the_model_loads(monkeypatch, capsys):
    import skyrm.eval.runner
    from skyrm.cli import main

    def load_model(*args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(skyrm.eval.runner, "load_model", load_model)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", "tiny", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot listen on 127.0.0.1:{port}: Address already in use (choose another --port)"
    assert main(["serve", "--model", "tiny", "--host", "192.0.2.1"]) == 1  # TEST-NET-1: no machine's own address
    assert capsys.readouterr().err.strip().endswith("Cannot assign requested address (check --host)")
    assert main(["serve", "--model", "tiny", "--port", "70000"]) == 1
    assert capsys.readouterr().err.strip().startswith("error: cannot listen on 127.0.0.1:70000: ")
