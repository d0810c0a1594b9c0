"""SparseEncoder: learned sparse vectors over a model's vocabulary (SPLADE), as sentence-transformers has them.

A SentenceTransformer whose modules end in SPLADE pooling (``Transformer(fill-mask) → SpladePooling``): it
loads, batches and saves through the same code, and its ``encode`` returns torch sparse COO tensors, a
weight for each vocabulary entry that the text activates and 0 elsewhere. Inference-free SPLADE folders (a
Router whose query route is a ``SparseStaticEmbedding``) load too: that route's texts are weighed by token,
without running the model (``embedkit.model_folder.Routes``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from ._checks import check_encode_options, check_positive_int, encode_inputs
from ._encoding.batching import run
from .model import SentenceTransformer
from .model_folder import model_config, save_routes
from .modules import SpladePooling
from .pool import EncodePool
from .similarity import PAIRWISE, SIMILARITY

logger = logging.getLogger(__name__)


class SparseEncoder(SentenceTransformer):
    """Loads a sentence-transformers SparseEncoder folder (``Transformer(fill-mask) → SpladePooling``) or a
    plain Hugging Face masked-LM folder (max pooling, as sentence-transformers does) and encodes text into
    sparse vectors. The API follows ``sentence_transformers.SparseEncoder``: code written for it ports by
    changing the import. Scores are dot products unless ``similarity_fn_name`` says otherwise.

    ``max_active_dims`` keeps only that many of each vector's largest weights (saved with the model)."""

    model_type = "SparseEncoder"

    def __init__(self, model_name_or_path: str | None = None, *args, max_active_dims: int | None = None, **kwargs):
        super().__init__(model_name_or_path, *args, **kwargs)
        self.routes = self.saved_config.pop("routes", None)
        pooling = self[-1]
        if not isinstance(pooling, SpladePooling):
            raise ValueError(f"a SparseEncoder's last module must be SpladePooling, not {type(pooling).__name__}")
        if pooling.embedding_dimension is None:  # sentence-transformers sets it on the first forward
            pooling.embedding_dimension = self.transformer.get_word_embedding_dimension()
        for route, static in (self.routes.static if self.routes else {}).items():
            if static.dimension != pooling.embedding_dimension:
                raise ValueError(
                    f"route {route!r} weighs {static.dimension} tokens; the model has {pooling.embedding_dimension}"
                )
        saved = self.saved_config.get("max_active_dims")
        self.max_active_dims = max_active_dims if max_active_dims is not None else saved
        self._check_max_active_dims(self.max_active_dims)
        self.prompts = {"query": "", "document": "", **self.prompts}  # as sentence-transformers saves them

    @property
    def similarity_fn_name(self) -> str:
        return self._similarity_fn_name or "dot"

    @similarity_fn_name.setter
    def similarity_fn_name(self, value: str | None) -> None:
        SentenceTransformer.similarity_fn_name.fset(self, value)

    def forward(self, features: dict) -> dict:
        """The modules, then (in inference) the sentence embedding cut to ``max_active_dims`` and made sparse."""
        features = super().forward(features)
        if not self.training:
            dense = keep_largest(features["sentence_embedding"], features.get("max_active_dims"))
            features["sentence_embedding"] = dense.to_sparse()
        return features

    # ----------------------------------------------------------------- encoding
    def encode(
        self,
        sentences=None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_tensor: bool = True,
        convert_to_sparse_tensor: bool = True,
        save_to_cpu: bool = False,
        device: str | list[str] | None = None,
        max_active_dims: int | None = None,
        pool: EncodePool | None = None,
        chunk_size: int | None = None,
        max_batch_tokens: int | None = None,
        token_ids: list[list[int] | None] | None = None,
        **kwargs,
    ):
        """Sparse vectors of one text (1-D) or a list of texts (2-D, input order kept): a torch sparse COO
        tensor, dense with ``convert_to_sparse_tensor=False``, a list of rows with ``convert_to_tensor=False``.

        ``max_active_dims`` overrides the model's; ``pool`` (or a list of ``device``s) spreads the work over
        processes; ``max_batch_tokens`` and ``token_ids`` are as for ``SentenceTransformer.encode``."""
        task = kwargs.pop("task", None)  # a Router's route ("query", "document"); other models ignore it
        static = self.routes.module_for(task) if self.routes else None
        single, texts, token_ids = encode_inputs(self, sentences, kwargs, token_ids, pool, device)
        check_encode_options(batch_size, max_batch_tokens, "float32", "sentence_embedding", pool)
        max_active_dims = self.max_active_dims if max_active_dims is None else max_active_dims
        self._check_max_active_dims(max_active_dims)
        prompt = self._resolve_prompt(prompt, prompt_name)
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        if isinstance(device, (list, tuple)):
            if pool is not None:
                raise ValueError("pass either pool or a list of devices, not both")
            with EncodePool(self, list(device)) as own:
                return self.encode(texts if not single else texts[0], prompt=prompt, batch_size=batch_size,
                                   show_progress_bar=show_progress_bar, convert_to_tensor=convert_to_tensor,
                                   convert_to_sparse_tensor=convert_to_sparse_tensor, max_active_dims=max_active_dims,
                                   pool=own, chunk_size=chunk_size, max_batch_tokens=max_batch_tokens)  # fmt: skip
        if device is not None:
            self.to(device)
        if static is not None:  # no model runs: each token's weight
            emb = static.encode([(prompt or "") + t for t in texts])
            if max_active_dims is not None:
                emb = keep_largest(emb.to_dense(), max_active_dims).to_sparse()
            emb = emb if save_to_cpu else emb.to(self.device)
        elif pool is not None and texts:
            options = {"prompt": prompt, "batch_size": batch_size, "max_active_dims": max_active_dims,
                       "max_batch_tokens": max_batch_tokens, "save_to_cpu": True,
                       **({"task": task} if self.routes else {})}  # fmt: skip
            emb = pool.map(texts, chunk_size, show_progress_bar, **options)
        else:
            options = {"max_active_dims": max_active_dims}
            emb = run(self, texts, prompt, batch_size, max_batch_tokens, "sentence_embedding", show_progress_bar,
                      token_ids, options)  # fmt: skip
            if emb is None:
                emb = torch.zeros(0, self.get_sentence_embedding_dimension(), device=self.device).to_sparse()
            if save_to_cpu:
                emb = emb.cpu()
        if not convert_to_sparse_tensor:
            emb = emb.to_dense()
        if single:
            return emb[0]
        return emb if convert_to_tensor else [emb[i] for i in range(emb.shape[0])]

    def encode_query(self, sentences, prompt_name: str | None = None, prompt: str | None = None, **kwargs):
        """Encode queries with ``query_prompt`` unless a prompt is given (a Router's ``query`` route)."""
        return super().encode_query(sentences, prompt_name, prompt, **{"task": "query", **kwargs})

    def encode_document(self, sentences, prompt_name: str | None = None, prompt: str | None = None, **kwargs):
        """Encode documents with ``document_prompt`` unless a prompt is given (a Router's ``document`` route)."""
        return super().encode_document(sentences, prompt_name, prompt, **{"task": "document", **kwargs})

    def save(self, path: str, **_ignored) -> None:
        """Write a sentence-transformers folder (a Router folder for inference-free SPLADE)."""
        if self.routes is None:
            return super().save(path)
        save_routes(list(self), self.routes, path, model_config(self))

    save_pretrained = save

    def encode_to_file(self, *args, **kwargs):
        raise TypeError("a SparseEncoder's vectors are sparse and do not go into a .npy file; encode in chunks")

    @staticmethod
    def _check_max_active_dims(value) -> None:
        if value is not None:
            check_positive_int("max_active_dims", value)

    # ----------------------------------------------------------------- reading vectors
    def decode(self, embeddings: Tensor, top_k: int | None = None):
        """(token, weight) pairs of a vector (or a list of them per row of a 2-D tensor), heaviest first;
        ``top_k`` keeps that many."""
        if top_k is not None:
            check_positive_int("top_k", top_k)
        if not isinstance(embeddings, Tensor):
            raise TypeError(f"decode() expects a torch.Tensor, got {type(embeddings).__name__}")
        if embeddings.dim() not in (1, 2):
            raise ValueError(f"decode() expects a 1-D or 2-D tensor, got {embeddings.dim()}-D")
        rows = as_sparse_rows(embeddings)
        row, column = rows.indices().cpu().numpy()
        weights = rows.values().detach().float().cpu().numpy()
        decoded = []
        for r in range(rows.shape[0]):
            inside = np.flatnonzero(row == r)
            heaviest = inside[np.argsort(-weights[inside], kind="stable")][:top_k]
            tokens = self.tokenizer.convert_ids_to_tokens(column[heaviest].tolist())
            decoded.append(list(zip(tokens, weights[heaviest].tolist())))
        return decoded[0] if embeddings.dim() == 1 else decoded

    @staticmethod
    def sparsity(embeddings: Tensor) -> dict[str, float]:
        """The mean count of active (non-zero) dimensions per vector, and the share of zeros."""
        if not isinstance(embeddings, Tensor):
            raise TypeError(f"sparsity() expects a torch.Tensor, got {type(embeddings).__name__}")
        if embeddings.dim() not in (1, 2):
            raise ValueError(f"sparsity() expects a 1-D or 2-D tensor, got {embeddings.dim()}-D")
        rows = as_sparse_rows(embeddings)
        n, width = rows.shape
        if n == 0 or width == 0:
            return {"active_dims": 0.0, "sparsity_ratio": 1.0}
        active = int(torch.count_nonzero(rows.values())) / n
        return {"active_dims": active, "sparsity_ratio": 1.0 - active / width}

    @staticmethod
    def intersection(embeddings_1: Tensor, embeddings_2: Tensor) -> Tensor:
        """The element-wise product of a vector with another (or with each row of a 2-D tensor), keeping
        the dimensions active in both: the terms two texts share, for ``decode``."""
        if embeddings_1.dim() != 1:
            raise ValueError(f"intersection() expects a 1-D first vector, got shape {tuple(embeddings_1.shape)}")
        if embeddings_1.shape[-1] != embeddings_2.shape[-1]:
            raise ValueError(f"vocabulary sizes differ: {embeddings_1.shape[-1]} and {embeddings_2.shape[-1]}")
        rows, vector = as_sparse_rows(embeddings_2), embeddings_1.to_dense().float()
        products = rows.values() * vector[rows.indices()[1]]
        keep = products > 0
        shared = torch.sparse_coo_tensor(rows.indices()[:, keep], products[keep], rows.shape, check_invariants=False)
        return shared.coalesce()[0] if embeddings_2.dim() == 1 else shared.coalesce()

    # ----------------------------------------------------------------- similarity
    def similarity(self, embeddings1, embeddings2) -> Tensor:
        """Matrix of scores between all pairs (dense), with ``similarity_fn_name``; sparse products for
        ``dot`` and ``cosine``."""
        a, b = self._rows(embeddings1, embeddings2)
        if self.similarity_fn_name in ("dot", "cosine"):
            return torch.sparse.mm(a, b.t()).to_dense()
        return SIMILARITY[self.similarity_fn_name](a.to_dense(), b.to_dense())

    def similarity_pairwise(self, embeddings1, embeddings2) -> Tensor:
        """Scores of ``embeddings1[i]`` against ``embeddings2[i]``."""
        a, b = self._rows(embeddings1, embeddings2)
        if self.similarity_fn_name in ("dot", "cosine"):
            return torch.sparse.sum(a * b, dim=1).to_dense()
        return PAIRWISE[self.similarity_fn_name](a.to_dense(), b.to_dense())

    def _rows(self, embeddings1, embeddings2) -> tuple[Tensor, Tensor]:
        """Both as sparse rows, scaled to unit length for ``cosine`` (whose scores are then dot products)."""
        a, b = as_sparse_rows(embeddings1), as_sparse_rows(embeddings2)
        return (unit_rows(a), unit_rows(b)) if self.similarity_fn_name == "cosine" else (a, b)


def keep_largest(embeddings: Tensor, count: int | None) -> Tensor:
    """Each row's ``count`` largest weights (by magnitude), the rest 0; None keeps every weight."""
    if count is None or count >= embeddings.shape[-1]:
        return embeddings
    _, top = torch.topk(embeddings.abs(), count, dim=-1)
    return torch.zeros_like(embeddings).scatter_(-1, top, embeddings.gather(-1, top))


def as_sparse_rows(embeddings) -> Tensor:
    """A coalesced 2-D float sparse COO tensor of one vector, a 2-D tensor or array, or a list of vectors."""
    if isinstance(embeddings, (list, tuple)):
        if not embeddings:
            raise ValueError("expected at least one vector")
        embeddings = torch.stack([e.to_dense() if isinstance(e, Tensor) else torch.as_tensor(e) for e in embeddings])
    elif not isinstance(embeddings, Tensor):
        embeddings = torch.as_tensor(np.asarray(embeddings))
    if embeddings.dim() == 1:
        embeddings = embeddings.unsqueeze(0)
    if embeddings.dim() != 2:
        raise ValueError(f"expected a 1-D or 2-D tensor, got {embeddings.dim()}-D")
    rows = embeddings if embeddings.is_sparse else embeddings.to_sparse()
    return rows.float().coalesce()


def unit_rows(rows: Tensor) -> Tensor:
    """Sparse rows scaled to unit length (a zero row stays zero)."""
    norms = torch.sparse.sum(rows * rows, dim=1).to_dense().sqrt().clamp_min(1e-12)
    row = rows.indices()[0]
    unit = torch.sparse_coo_tensor(rows.indices(), rows.values() / norms[row], rows.shape, check_invariants=False)
    return unit.coalesce()


__all__ = ["SparseEncoder"]
