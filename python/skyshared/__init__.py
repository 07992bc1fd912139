"""What skyfilter and skyrm share, with no Rust extension and no polars (skyrm runs where they are absent): output
paths checked before any work and files that appear all at once or not at all (:mod:`skyshared.outputs`), local
paths told apart from Hugging Face hub ids, with hub look-ups that fail fast and quietly offline
(:mod:`skyshared.hub`), both in the standard library only; and the one judge of a JSON file's rows, with the rows
that cannot be read set apart (:mod:`skyshared.jsonrows`, pyarrow); HelpSteer2's turn markers read as turns
(:mod:`skyshared.turns`); and a Ray connection for one command (:mod:`skyshared.ray_session`, imports Ray only
when called).
"""
