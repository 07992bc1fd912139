"""skyrm: Bradley-Terry reward models on Hugging Face decoders (training and evaluation).

Imports neither the Rust extension nor polars: a GPU machine may have only torch, transformers and pyarrow.
"""

__version__ = "0.1.0"
