"""skyfilter: curate preference data for reward models, with Rust kernels over Arrow tables.

The main entry points are :func:`run_curate` with :func:`load_recipe` (a whole curation recipe: sources,
dedup, selection, decontamination, with a manifest), :func:`contaminate` (benchmark n-gram contamination of
training pairs), :func:`run_dedup` and :func:`dedup_rows` (exact and near duplicates, conflicting preferences),
:func:`select_table`, :func:`select_rows` and :func:`run_select` (score-based selection), :func:`to_pairs` (any
known layout into the canonical pair table) and the ``skyfilter`` command. The functions that take rows take
pyarrow tables, batches and streams, polars frames and ``datasets.Dataset`` alike and return what they were given
(:mod:`skyfilter.frames`); ``import skyfilter.polars`` adds the ``.skyfilter`` namespace to polars expressions and
frames (:mod:`skyfilter.polars`).
"""

from skyfilter._core import __version__
from skyfilter.benchmarks import Benchmark, BenchmarkError, benchmark_from_table, load_benchmark
from skyfilter.contaminate import PRESETS, Matcher, Preset, contaminate
from skyfilter.curate import CurateError, Manifest, run_curate
from skyfilter.dedup import DedupOptions, dedup_rows, run_dedup
from skyfilter.io import InputError, open_source, read_table
from skyfilter.recipe import Recipe, RecipeError, load_recipe, parse_recipe
from skyfilter.schema import PAIR_SCHEMA, SchemaError, detect_layout, match_texts, to_pairs
from skyfilter.select import Selection, SelectOptions, run_select, select_rows, select_table

__all__ = [
    "__version__",
    "Benchmark",
    "BenchmarkError",
    "CurateError",
    "DedupOptions",
    "InputError",
    "Manifest",
    "Matcher",
    "PAIR_SCHEMA",
    "PRESETS",
    "Preset",
    "Recipe",
    "RecipeError",
    "SchemaError",
    "SelectOptions",
    "Selection",
    "benchmark_from_table",
    "contaminate",
    "dedup_rows",
    "detect_layout",
    "load_benchmark",
    "load_recipe",
    "match_texts",
    "open_source",
    "parse_recipe",
    "read_table",
    "run_curate",
    "run_dedup",
    "run_select",
    "select_rows",
    "select_table",
    "to_pairs",
]
