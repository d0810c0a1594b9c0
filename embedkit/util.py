"""The helpers that ``sentence_transformers.util`` users reach for, under the same names."""

import logging

from tqdm.auto import tqdm

from .mining import community_detection, paraphrase_mining, paraphrase_mining_embeddings
from .quantization import quantize_embeddings
from .similarity import (
    cos_sim,
    dot_score,
    euclidean_sim,
    manhattan_sim,
    normalize_embeddings,
    pairwise_cos_sim,
    pairwise_dot_score,
    pairwise_euclidean_sim,
    pairwise_manhattan_sim,
    semantic_search,
    truncate_embeddings,
)


class LoggingHandler(logging.Handler):
    """A logging handler that writes through ``tqdm.write``, so log lines do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record))
            self.flush()
        except Exception:
            self.handleError(record)


__all__ = [
    "LoggingHandler",
    "community_detection",
    "cos_sim",
    "dot_score",
    "euclidean_sim",
    "manhattan_sim",
    "normalize_embeddings",
    "pairwise_cos_sim",
    "pairwise_dot_score",
    "pairwise_euclidean_sim",
    "pairwise_manhattan_sim",
    "paraphrase_mining",
    "paraphrase_mining_embeddings",
    "quantize_embeddings",
    "semantic_search",
    "truncate_embeddings",
]
