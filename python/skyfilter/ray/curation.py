"""``skyfilter curate --engine ray``: the recipe's dedup, select and decontaminate steps on a Ray cluster.

:class:`RaySteps` has the three in-memory functions the curation pipeline calls (``dedup_pairs``, ``select_table``,
``contaminate``), with the local ones' signatures and results, computed by :func:`skyfilter.ray.dedup`,
:func:`skyfilter.ray.select` and :func:`skyfilter.ray.contaminate` on the pool as a Ray dataset. The pool (the
converted pairs) stays on the driver, as the manifest accounts for every row of it; the sources are converted
there too.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from skyfilter import _core
from skyfilter.dedup import REASONS as DEDUP_REASONS
from skyfilter.dedup import Decisions as DedupDecisions
from skyfilter.dedup import DedupOptions
from skyfilter.io import table_source
from skyfilter.select import ALL, Decisions, Selection, SelectOptions, report_of_decisions
from skyfilter.select import REASONS as SELECT_REASONS

__all__ = ["RaySteps"]

_ROW = "_skyfilter_row"
_BLOCK_ROWS = 65_536


class RaySteps:
    """The curation steps' kernels on the connected Ray cluster (see the module docstring)."""

    def __init__(self, ray):
        self.ray = ray

    def _run(self, table: pa.Table, step) -> pa.Table:
        """``step(dataset)`` on the table's rows (in blocks, in order), its result back in the table's order."""
        rows = table.append_column(_ROW, pa.array(np.arange(table.num_rows), pa.int64()))
        blocks = [rows.slice(a, _BLOCK_ROWS) for a in range(0, rows.num_rows, _BLOCK_ROWS)] or [rows]
        result = pa.concat_tables(self.ray.get(step(self.ray.data.from_arrow(blocks)).to_arrow_refs()))
        return result.take(pa.array(np.argsort(result.column(_ROW).to_numpy(), kind="stable")))

    def contaminate(
        self, table: pa.Table, bench, preset: str, *, prompt_column: str, threads: int, match_short: bool
    ) -> pa.Table:
        from skyfilter.contaminate import RESULT_COLUMNS
        from skyfilter.ray import contaminate

        result = self._run(
            table, lambda ds: contaminate(ds, bench, preset, prompt_column=prompt_column, match_short=match_short)
        )
        return pa.table({"input_row": result.column(_ROW), **{c: result.column(c) for c in RESULT_COLUMNS}})

    def select_table(self, table: pa.Table, options: SelectOptions, *, threads: int, name: str) -> Selection:
        from skyfilter.ray import select

        result = self._run(table, lambda ds: select(ds, options, piece_rows=_BLOCK_ROWS))
        codes = {r: i for i, r in enumerate(SELECT_REASONS)}
        reason = np.array([codes[r] for r in result.column("reason").to_pylist()], dtype=np.uint8)
        adjusted = result.column("adjusted_score").fill_null(np.nan).to_numpy()
        if options.group_by is not None:
            ids = _core.GroupIds()
            group = ids.encode(table.column(options.group_by).combine_chunks().cast(pa.string()), threads=threads)
            group, names = group.to_numpy(), ids.names()
        else:
            group, names = np.zeros(table.num_rows, np.uint32), [ALL]
        decisions = Decisions(reason, adjusted, group, names)
        return Selection(table, decisions, report_of_decisions(decisions, [table_source(name, table)], options), name)

    def dedup_pairs(self, pairs: pa.Table, options: DedupOptions, threads: int, where: str) -> DedupDecisions:
        from skyfilter.ray import dedup

        result = self._run(pairs, lambda ds: dedup(ds, options))
        codes = {r: i for i, r in enumerate(DEDUP_REASONS)}
        return DedupDecisions(
            reason=np.array([codes[r] for r in result.column("reason").to_pylist()], dtype=np.int8),
            other=result.column("duplicate_of").fill_null(-1).to_numpy(),
            cluster_id=result.column("cluster_id").to_numpy(),
            conflict=result.column("conflict").to_numpy(zero_copy_only=False),
        )
