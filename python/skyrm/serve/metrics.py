"""What ``GET /metrics`` reports: requests and their answers per endpoint, latency percentiles over the last
requests, the batches scored (how many sequences and tokens each, how long the forward took), and the queue.
Everything is updated on the event loop's thread (batches are reported from it too), so no lock is needed.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque

__all__ = ["Metrics", "percentiles"]

#: How many of the latest requests (per endpoint) and batches the percentiles are taken over.
WINDOW = 10_000
PERCENTILES = (50, 90, 99)


def percentiles(values, points=PERCENTILES) -> dict[str, float | None]:
    """Nearest-rank percentiles: ``{"p50": ..., "p90": ..., "p99": ...}`` (None without values)."""
    ordered = sorted(values)
    if not ordered:
        return {f"p{p}": None for p in points}
    return {f"p{p}": ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in points}


def _size_bucket(n: int) -> str:
    """1, 2-3, 4-7, 8-15, ...: the batch-size histogram's buckets."""
    low = 1 << (max(n, 1).bit_length() - 1)
    return str(low) if low == 1 else f"{low}-{2 * low - 1}"


class _Endpoint:
    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.latencies: deque[float] = deque(maxlen=WINDOW)
        self.sequences = 0

    def report(self) -> dict:
        latency = {k: None if v is None else round(1000 * v, 3) for k, v in percentiles(self.latencies).items()}
        by_status = {str(k): v for k, v in sorted(self.statuses.items())}
        return {"requests": sum(self.statuses.values()), "by_status": by_status, "sequences": self.sequences,
                "latency_ms": latency}  # fmt: skip


class Metrics:
    """Counters of one server; :meth:`report` is the JSON of ``GET /metrics``."""

    def __init__(self) -> None:
        self.started = time.time()
        self.endpoints: dict[str, _Endpoint] = {}
        self.batches = 0
        self.batch_sizes: deque[int] = deque(maxlen=WINDOW)
        self.batch_tokens: deque[int] = deque(maxlen=WINDOW)
        self.size_histogram: Counter[str] = Counter()
        self.sequences_scored = 0
        self.forward_seconds = 0.0

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        stats = self.endpoints.setdefault(endpoint, _Endpoint())
        stats.statuses[status] += 1
        if status == 200:
            stats.latencies.append(seconds)

    def sequences(self, endpoint: str, count: int) -> None:
        self.endpoints.setdefault(endpoint, _Endpoint()).sequences += count

    def batch(self, sequences: int, tokens: int, seconds: float) -> None:
        self.batches += 1
        self.batch_sizes.append(sequences)
        self.batch_tokens.append(tokens)
        self.size_histogram[_size_bucket(sequences)] += 1
        self.sequences_scored += sequences
        self.forward_seconds += seconds

    def report(self, queue: dict) -> dict:
        uptime = time.time() - self.started
        sizes = list(self.batch_sizes)
        batches = {
            "count": self.batches, "sequences": self.sequences_scored,
            "mean_sequences": round(sum(sizes) / len(sizes), 3) if sizes else None,
            "sequences_per_batch": percentiles(sizes), "tokens_per_batch": percentiles(self.batch_tokens),
            "histogram": dict(sorted(self.size_histogram.items(), key=lambda kv: int(kv[0].split("-")[0]))),
            "forward_seconds": round(self.forward_seconds, 3),
            "busy_fraction": round(self.forward_seconds / uptime, 4) if uptime > 0 else None,
        }  # fmt: skip
        return {"uptime_s": round(uptime, 3), "endpoints": {k: v.report() for k, v in sorted(self.endpoints.items())},
                "batches": batches, "queue": queue}  # fmt: skip
