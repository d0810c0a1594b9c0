"""Haystack components for learned sparse vectors over an embedkit ``SparseEncoder``: the embedders whose
``SparseEmbedding`` outputs ``EmbedkitSparseEmbeddingRetriever`` (in ``components``) searches with, and that
``EmbedkitDocumentStore`` stores as its index's sparse vectors. Serializable, and loaded in ``warm_up``."""

from __future__ import annotations

import dataclasses
from typing import Any

from haystack import Document, component
from haystack.dataclasses import SparseEmbedding

from embedkit._checks import check_positive_int
from integrations.haystack.components import DocumentTexts, Serialized
from integrations.sparse import vectors_of


class _SparseModelComponent(Serialized):
    """What the sparse embedders share: an embedkit ``SparseEncoder`` name or path, loaded once."""

    def __init__(self, model, batch_size, progress_bar, max_active_dims, prompt_name, device):
        check_positive_int("batch_size", batch_size)
        self.model, self.batch_size, self.progress_bar = model, batch_size, progress_bar
        self.max_active_dims, self.prompt_name, self.device = max_active_dims, prompt_name, device
        self._model = None

    def warm_up(self) -> None:
        if self._model is None:
            from embedkit import SparseEncoder

            self._model = SparseEncoder(self.model, device=self.device)

    def _encode(self, method: str, texts: list[str]) -> list[SparseEmbedding]:
        self.warm_up()
        options = {"prompt_name": self.prompt_name} if self.prompt_name else {}
        output = getattr(self._model, method)(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=self.progress_bar,
            max_active_dims=self.max_active_dims,
            **options,
        )
        return [SparseEmbedding(indices=d.tolist(), values=w.tolist()) for d, w in vectors_of(output, len(texts))]

    def _init_parameters(self) -> dict[str, Any]:
        names = ("model", "batch_size", "progress_bar", "max_active_dims", "prompt_name", "device")
        return {name: getattr(self, name) for name in names}


@component
class EmbedkitSparseTextEmbedder(_SparseModelComponent):
    """Embeds a query as a learned sparse vector (SPLADE) with the model's query side."""

    def __init__(
        self,
        model: str,
        batch_size: int = 32,
        progress_bar: bool = False,
        max_active_dims: int | None = None,
        prompt_name: str | None = None,
        device: str | None = None,
    ):
        _SparseModelComponent.__init__(self, model, batch_size, progress_bar, max_active_dims, prompt_name, device)

    @component.output_types(sparse_embedding=SparseEmbedding)
    def run(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"EmbedkitSparseTextEmbedder expects a string, got {type(text).__name__}")
        return {"sparse_embedding": self._encode("encode_query", [text])[0]}


@component
class EmbedkitSparseDocumentEmbedder(_SparseModelComponent, DocumentTexts):
    """Embeds Documents as learned sparse vectors with the model's document side; ``meta_fields_to_embed``
    are put before the content, joined by ``embedding_separator``. Returns copies with ``sparse_embedding``."""

    def __init__(
        self,
        model: str,
        batch_size: int = 32,
        progress_bar: bool = False,
        max_active_dims: int | None = None,
        prompt_name: str | None = None,
        device: str | None = None,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
    ):
        _SparseModelComponent.__init__(self, model, batch_size, progress_bar, max_active_dims, prompt_name, device)
        DocumentTexts.__init__(self, meta_fields_to_embed, embedding_separator)

    def _init_parameters(self) -> dict[str, Any]:
        return {**_SparseModelComponent._init_parameters(self), **self.fields()}

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]):
        texts = self.texts(documents, "EmbedkitSparseDocumentEmbedder expects a list of Documents")
        vectors = self._encode("encode_document", texts) if texts else []
        return {"documents": [dataclasses.replace(d, sparse_embedding=v) for d, v in zip(documents, vectors)]}
