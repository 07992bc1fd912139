"""The ray engine: ``skyfilter contaminate|dedup|select|curate --engine ray`` on a Ray cluster, with the local
engine's decisions; and the same steps on a Ray dataset in a user's own pipeline.

* :func:`run_contaminate`, :func:`run_dedup`, :func:`run_select`: the commands (files, folders, globs and URIs in;
  folders of parquet shards, a report and bad rows out), as :func:`skyfilter.contaminate.run` and its siblings.
* :func:`contaminate`, :func:`dedup`, :func:`select`: ``ray.data.Dataset`` in, ``ray.data.Dataset`` out (the rows
  with the decision columns added).

Needs Ray Data (``pip install 'ray[data]'``); importing this package does not import Ray: a run connects to the
cluster (:func:`skyshared.ray_session.ray_session`), or uses the one the program is connected to.
"""

from skyfilter.ray.contamination import contaminate
from skyfilter.ray.contamination import run as run_contaminate
from skyfilter.ray.deduplication import dedup
from skyfilter.ray.deduplication import run as run_dedup
from skyfilter.ray.selection import run as run_select
from skyfilter.ray.selection import select

__all__ = ["run_contaminate", "run_dedup", "run_select", "contaminate", "dedup", "select"]
