"""The ray engine: ``skyfilter contaminate|dedup|select|curate --engine ray`` on a Ray cluster, with the local
engine's decisions. Needs Ray Data (``pip install 'ray[data]'``); nothing here imports it until a run starts."""
