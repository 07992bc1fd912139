"""skyrm.eval: RewardBench (v1 and 2) and pairwise benchmarks for sequence-classification reward models, with
the official arithmetic (:mod:`skyrm.eval.rewardbench`) and runner formatting (:mod:`skyrm.eval.runner`);
``skyrm eval`` (``python -m skyrm.eval``) is the command line."""

from skyrm.eval.rewardbench import best_of_n_credit, rb2_score, section_scores, ties_score

__all__ = ["section_scores", "best_of_n_credit", "ties_score", "rb2_score"]
