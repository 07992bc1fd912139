"""Optimiser steps and micro-batches: which pairs each step trains on, and how they are laid out in tensors.

* :func:`step_plan`: the pairs of every optimiser step, a fixed number per step (``batch_pairs``), for the given
  epochs or exactly ``max_steps`` steps when given (as in TRL, the step count wins over the epochs), in an order
  shuffled by ``seed`` and the epoch only, so that the data order does not depend on the number of processes or
  on the micro-batch size; each process takes its share of a step by position.
* :func:`micro_batches`: a step's pairs as micro-batches of at most ``token_budget`` tokens: padded rows in order
  (optionally shortest first), packed rows first-fit decreasing (the fewest rows). The chosen and the
  rejected sequence of a pair always share a micro-batch, one after the other, so the rewards come out as
  ``[chosen_0, rejected_0, chosen_1, ...]``. Padded micro-batches are right-padded rows; packed ones are a single
  row holding several sequences back to back, ``position_ids`` restarting at 0 for each, with the ends of the
  sequences given (:func:`skyrm.model.packed_ends`) and a block-diagonal causal mask: dense (``block_mask``),
  flex_attention's BlockMask built on the device (``flex``, its block size), or none for a varlen kernel, which
  takes the cumulative lengths of the sequences instead (``cu_seqlens``, the longest in ``longest``).
* :func:`scoring_batches`: single sequences as padded micro-batches, for scoring (``skyrm.eval``).

Padded rows are laid out by one function, :func:`padded_rows` (right padding), and grouped under the token budget
by one function, for training and scoring alike.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from skyrm.model import block_causal_mask, document_block_mask, packed_ends

__all__ = [
    "MicroBatch",
    "step_plan",
    "micro_batches",
    "fixed_varlen",
    "in_pair_order",
    "scoring_batches",
    "padded_rows",
]


@dataclass
class MicroBatch:
    input_ids: torch.Tensor
    # (rows, length) for padded rows; packed: a (1, 1, length, length) block mask, or None for varlen attention (and
    # for flex attention, whose BlockMask is built where the batch is moved to: see ``to``)
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor | None
    ends: tuple[torch.Tensor, torch.Tensor] | None
    pairs: int
    tokens: int  # real (non-padding) tokens
    square_tokens: int  # the sum of the squared sequence lengths (for the attention FLOPs)
    flex: int = 0  # a packed row for flex attention: its BlockMask's block size (made on the device); 0: not one
    pair_ids: tuple[int, ...] = ()  # the pairs it holds, in the order of its rewards
    # a packed row for a varlen kernel: where each sequence starts, then the row's length (int32), and the longest
    # sequence's length
    cu_seqlens: torch.Tensor | None = None
    longest: int = 0

    @property
    def varlen(self) -> tuple[torch.Tensor, int] | None:
        """(``cu_seqlens``, ``longest``) of a packed row for a varlen kernel (:func:`skyrm.model.rewards`)."""
        return None if self.cu_seqlens is None else (self.cu_seqlens, self.longest)

    def to(self, device) -> MicroBatch:
        cuda = torch.device(device).type == "cuda"

        def move(t: torch.Tensor | None) -> torch.Tensor | None:  # pinned and asynchronous to a GPU: no host wait
            return None if t is None else t.pin_memory().to(device, non_blocking=True) if cuda else t.to(device)

        ends = None if self.ends is None else (move(self.ends[0]), move(self.ends[1]))
        positions = move(self.position_ids)
        mask = document_block_mask(positions, self.flex) if self.flex else move(self.attention_mask)
        return MicroBatch(move(self.input_ids), mask, positions, ends, self.pairs, self.tokens, self.square_tokens,
                          pair_ids=self.pair_ids, cu_seqlens=move(self.cu_seqlens), longest=self.longest)  # fmt: skip


def step_plan(
    n_pairs: int, batch_pairs: int, epochs: float, seed: int, max_steps: int | None = None
) -> list[list[int]]:
    """The pair indices of every optimiser step: each epoch a fresh permutation, steps of ``batch_pairs`` pairs
    (the last incomplete step of an epoch is dropped), ``epochs`` may be fractional; ``max_steps`` steps when given,
    whatever the epochs (more epochs when needed, fewer when the steps end first)."""
    if n_pairs < batch_pairs:
        raise ValueError(f"{n_pairs} pairs is fewer than one step of {batch_pairs}")
    per_epoch = n_pairs // batch_pairs
    total = max_steps if max_steps is not None else max(1, int(per_epoch * epochs))
    steps = []
    epoch = 0
    while len(steps) < total:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n_pairs, generator=generator).tolist()
        steps += [order[i * batch_pairs : (i + 1) * batch_pairs] for i in range(per_epoch)]
        epoch += 1
    return steps[:total]


def padded_rows(sequences: list[list[int]], pad_id: int, pairs: int = 0) -> MicroBatch:
    """The sequences as right-padded rows (``pad_id`` after each, attention mask 0 there): the one padded layout,
    of training and of scoring alike. Right padding is what Hugging Face's readout (the last token that is not
    the pad) assumes; the pad is never a token that ends a sequence (:mod:`skyrm.padding`)."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return MicroBatch(ids, mask, None, None, pairs, sum(len(s) for s in sequences), _squares(sequences))


def _packed(sequences: list[list[int]], pad_id: int, pairs: int, length: int, block_mask: bool, flex: int = 0,
            count: int = 0, longest: int = 0) -> MicroBatch:  # fmt: skip
    ids = torch.full((1, length), pad_id, dtype=torch.long)
    positions = torch.zeros((1, length), dtype=torch.long)
    valid = torch.zeros((1, length), dtype=torch.long)
    at = 0
    for s in sequences:
        ids[0, at : at + len(s)] = torch.tensor(s, dtype=torch.long)
        positions[0, at : at + len(s)] = torch.arange(len(s))
        valid[0, at : at + len(s)] = 1
        at += len(s)
    mask = block_causal_mask(positions, valid, torch.float32) if block_mask else None
    batch = MicroBatch(ids, mask, positions, packed_ends(positions, valid), pairs, at, _squares(sequences),
                       0 if block_mask else flex)  # fmt: skip
    if not (block_mask or flex):  # a varlen kernel's row: its sequences, then its padding as sequences of its own
        lengths = [len(s) for s in sequences]
        if count:  # a fixed number of sequences, each of at least a token (the kernel writes no other output)
            pieces, tail = count - len(lengths), length - at
            size, longer = divmod(tail, pieces)
            lengths += [size + 1] * longer + [size] * (pieces - longer)
        if longest and max(lengths) > longest:  # the kernel would leave the rest of a longer one unwritten
            raise ValueError(f"a sequence of {max(lengths)} tokens, over the bound of {longest} given")
        batch.cu_seqlens = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
        batch.longest = longest or max(lengths)
    return batch


def _squares(sequences: list[list[int]]) -> int:
    return sum(len(s) ** 2 for s in sequences)


def _groups(units: list[list[list[int]]], token_budget: int, packing: bool, name) -> list[list[int]]:
    """The units (a pair's two sequences, or one sequence) grouped into micro-batches of at most ``token_budget``
    tokens. Packed, the cost of a group is the sum of its lengths, and the units go first-fit decreasing: longest
    first, each into the first micro-batch with room, which leaves the fewest rows (each a full ``token_budget``
    computed under fixed shapes) for the same tokens: next-fit in the given order filled 81% of the rows on real
    steps of 32 pairs (docs/benchmarks.md, "The rows' fill"). Padded, the cost is rows times the longest (padding
    counted) and the units are grouped in their order (shortest first makes the rows alike). Each group lists its
    units in their order. ``name(i)`` names unit ``i`` in the error for a unit over the budget."""
    sizes = [sum(len(s) for s in unit) if packing else len(unit) * max(len(s) for s in unit) for unit in units]
    for i, size in enumerate(sizes):
        if size > token_budget:
            raise ValueError(f"{name(i)} needs {size} tokens, over the micro-batch budget of {token_budget}")
    groups: list[list[int]] = []
    if packing:
        room: list[int] = []
        for i in sorted(range(len(units)), key=lambda i: -sizes[i]):
            at = next((g for g, free in enumerate(room) if free >= sizes[i]), len(groups))
            if at == len(groups):
                groups.append([])
                room.append(token_budget)
            groups[at].append(i)
            room[at] -= sizes[i]
        return [sorted(g) for g in groups]
    rows = longest = 0
    for i, unit in enumerate(units):
        lengths = [len(s) for s in unit]
        if not groups or (rows + len(lengths)) * max(longest, *lengths) > token_budget:
            groups.append([])
            rows = longest = 0
        groups[-1].append(i)
        rows, longest = rows + len(lengths), max(longest, *lengths)
    return groups


def micro_batches(
    chosen: list[list[int]],
    rejected: list[list[int]],
    pairs: list[int],
    token_budget: int,
    pad_id: int,
    packing: bool = True,
    block_mask: bool = True,
    by_length: bool = False,
    flex: int = 0,
    row_multiple: int = 0,
    shape: tuple[int, int] | None = None,
) -> list[MicroBatch]:
    """The given pairs as micro-batches of at most ``token_budget`` tokens (padding counted for padded rows).
    Packed rows are exactly ``token_budget`` long when ``block_mask`` (fixed shapes), else as long as needed.
    ``by_length`` takes the pairs shortest first, so that padded micro-batches hold sequences of about one length
    (little padding, attention over short rows); packed micro-batches always take them longest first, first-fit
    (:func:`_groups`). A step's loss is a sum over its pairs, so neither order changes it. ``flex`` (packed rows,
    no ``block_mask``), a block size, marks packed rows for flex attention, ``token_budget`` long, whose
    BlockMask has blocks of that size; with ``row_multiple`` they are padded to a multiple of it instead (less
    padding computed, lengths that vary). Packed rows with neither are for a varlen kernel, with their
    ``cu_seqlens``: as long as their sequences, or with ``row_multiple`` padded to a multiple of it in fixed shapes
    (for compiled layers of one graph a length): the same number of sequences in every row, the padding cut into
    the sequences a row lacks, and one bound on their lengths, ``shape`` (:func:`fixed_varlen`, computed once for
    a run; by default for these pairs). Each micro-batch names its pairs in ``pair_ids``, in the order of its
    rewards; padded micro-batches take the pairs in order."""
    if by_length:
        pairs = sorted(pairs, key=lambda p: max(len(chosen[p]), len(rejected[p])))
    units = [[chosen[p], rejected[p]] for p in pairs]
    count, longest = 0, 0
    if packing and not (block_mask or flex) and row_multiple:  # a varlen kernel's rows in fixed shapes
        count, longest = shape or fixed_varlen(chosen, rejected, len(pairs), token_budget, row_multiple)
    batches = []
    for group in _groups(units, token_budget - count, packing, lambda i: f"pair {pairs[i]}"):
        sequences = [s for i in group for s in units[i]]
        if packing:
            # fixed shapes where a mask is built for them (flex attention compiles once per shape)
            length = sum(len(s) for s in sequences)
            if block_mask or (flex and not row_multiple):
                length = token_budget
            elif row_multiple:
                padded = length + count - len(sequences) if count else length  # varlen: a token a padding piece
                length = min(token_budget, -(-padded // row_multiple) * row_multiple)
            batch = _packed(sequences, pad_id, len(group), length, block_mask, flex, count, longest)
        else:
            batch = padded_rows(sequences, pad_id, len(group))
        batch.pair_ids = tuple(pairs[i] for i in group)
        batches.append(batch)
    return batches


def fixed_varlen(chosen: list[list[int]], rejected: list[list[int]], pairs: int, token_budget: int,
                 row_multiple: int, longest: int = 0) -> tuple[int, int]:  # fmt: skip
    """The shape of a varlen kernel's rows in fixed shapes (:func:`micro_batches` with ``row_multiple``) for a run
    whose micro-batches are made ``pairs`` pairs at a time: the sequences a row has, ``2k + 1`` where k is the most
    pairs a row can hold (the shortest pairs of the data, at most ``pairs``: every row then has at least one
    sequence of padding, and the kernel no more than it needs), and a bound on their lengths, ``longest`` (e.g. the
    max length; by default the data's longest sequence) or ``row_multiple``, whichever is larger (no piece of
    padding is longer than the multiple: a row's length rounds its tokens up by less). A row's budget keeps a
    token for each sequence of padding, so the longest pair must fit in ``token_budget`` less that count."""
    firsts, seconds = _lengths(chosen), _lengths(rejected)
    sizes = sorted(a + b for a, b in zip(firsts, seconds, strict=True))
    held = 0
    for size in itertools.accumulate(sizes[:pairs]):
        if size > token_budget:
            break
        held += 1
    count = 2 * held + 1
    if sizes and sizes[-1] > token_budget - count:
        raise ValueError(f"rows of fixed shapes keep {count} of a micro-batch's tokens for the sequences of their "
                         f"padding: the longest pair ({sizes[-1]} tokens) needs a micro-batch of at least "
                         f"{sizes[-1] + count} tokens, not {token_budget}")  # fmt: skip
    return count, max(longest or max([*firsts, *seconds], default=0), row_multiple)


def _lengths(sequences) -> list[int]:
    """The lengths of token lists: skyrm.data's ``TokenLists`` know theirs; plain lists are measured."""
    return sequences.lengths().tolist() if hasattr(sequences, "lengths") else [len(s) for s in sequences]


def in_pair_order(batches: list[MicroBatch], rewards: list[torch.Tensor], pairs: list[int]) -> torch.Tensor:
    """The rewards of micro-batches (``rewards[i]``: ``[chosen, rejected, ...]`` of ``batches[i]``) as
    ``[chosen, rejected, ...]`` of ``pairs``: packed micro-batches take the pairs longest first."""
    by_pair = dict(zip((p for b in batches for p in b.pair_ids), torch.cat(rewards).view(-1, 2), strict=True))
    return torch.cat([by_pair[p] for p in pairs])


def scoring_batches(sequences: list[list[int]], token_budget: int, pad_id: int,
                    by_length: bool = True) -> list[tuple[list[int], MicroBatch]]:  # fmt: skip
    """Single sequences (for scoring) as right-padded micro-batches of at most ``token_budget`` tokens, padding
    counted, of like lengths (``by_length``, shortest first) or in input order; each with the indices of the
    sequences it holds, row by row."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i])) if by_length else list(range(len(sequences)))
    units = [[sequences[i]] for i in order]
    groups = _groups(units, token_budget, False, lambda i: f"sequence {order[i]}")
    return [([order[i] for i in g], padded_rows([sequences[order[i]] for i in g], pad_id)) for g in groups]
