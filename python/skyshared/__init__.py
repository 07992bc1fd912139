"""What skyfilter and skyrm share, in the standard library only (skyrm runs where the Rust extension and polars
are absent, so this package imports neither): output paths checked before any work and files that appear all
at once or not at all (:mod:`skyshared.outputs`), and local paths told apart from Hugging Face hub ids, with
hub look-ups that fail fast and quietly offline (:mod:`skyshared.hub`).
"""
