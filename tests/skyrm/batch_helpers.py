"""Rewards of micro-batches put back in the order of the pairs (packed micro-batches take the pairs longest
first: each names its pairs, in the order of its rewards, in ``pair_ids``)."""

from __future__ import annotations

import torch


def in_pair_order(batches, rewards: list[torch.Tensor], pairs: list[int]) -> torch.Tensor:
    """``rewards[i]`` (``[chosen, rejected, ...]`` of ``batches[i]``) as ``[chosen, rejected, ...]`` of ``pairs``."""
    by_pair = dict(zip((p for b in batches for p in b.pair_ids), torch.cat(rewards).view(-1, 2), strict=True))
    return torch.cat([by_pair[p] for p in pairs])
