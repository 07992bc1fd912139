"""Source adapters: each converts one published dataset layout into the curation pair table
(:data:`CURATION_SCHEMA`), accounting for every input row (used by a pair, or dropped with a reason).

=================  =========================================================================================
adapter            dataset
=================  =========================================================================================
``helpsteer2``     ``nvidia/HelpSteer2``: two rated responses per prompt; chosen = more helpful, ties dropped
``offsetbias``     ``NCSOFT/offsetbias``: ``output_1`` / ``output_2`` and the better one's ``label``
``wildguardmix``   ``allenai/wildguardmix`` (``wildguardtrain``): refusal preferred for harmful prompts,
                   compliance for unharmful ones; keeps the ``adversarial`` flag
``magpie-dpo``     the Magpie Pro / Air / Llama-3.1-Pro DPO-100K sets: ArmoRM best and worst of five responses
``magpie-ultra``   ``argilla/magpie-ultra-v0.1``: the 405B instruct answer against the base model's
``pairs``          your own pairs, in any layout skyfilter reads (:mod:`skyfilter.schema`)
=================  =========================================================================================

Each module's docstring gives the exact layout it reads and where that layout is documented. An adapter is a
module with ``COLUMNS`` (the columns it reads) and ``convert(table, source, generator=None) -> Converted``.
"""

from __future__ import annotations

from types import ModuleType

from skyfilter.adapters import helpsteer2, magpie_dpo, magpie_ultra, offsetbias, pairs, wildguardmix
from skyfilter.adapters._base import CURATION_SCHEMA, DROPPED_SCHEMA, AdapterError, Converted

__all__ = ["ADAPTERS", "CURATION_SCHEMA", "DROPPED_SCHEMA", "AdapterError", "Converted"]

ADAPTERS: dict[str, ModuleType] = {
    "helpsteer2": helpsteer2,
    "offsetbias": offsetbias,
    "wildguardmix": wildguardmix,
    "magpie-dpo": magpie_dpo,
    "magpie-ultra": magpie_ultra,
    "pairs": pairs,
}
