"""The request bodies the server accepts. Unknown fields are refused, so a misspelt option is an error,
and types are strict."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "8" is not a number, "yes" not a boolean


class Embeddings(Strict):
    """OpenAI's ``/v1/embeddings``, with ``input_type``/``prompt_name`` (which prompt) and ``truncate``."""

    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)
    input_type: Literal["query", "document", "passage"] | None = None
    prompt_name: str | None = None
    truncate: bool = False
    user: str | None = None


class TeiEmbed(Strict):
    """text-embeddings-inference's ``/embed``."""

    inputs: str | list[str]
    normalize: bool = True
    truncate: bool = False
    prompt_name: str | None = None
    truncation_direction: Literal["Right"] = "Right"


class TeiEmbedSparse(Strict):
    """text-embeddings-inference's ``/embed_sparse``."""

    inputs: str | list[str]
    truncate: bool = False
    prompt_name: str | None = None
    truncation_direction: Literal["Right"] = "Right"


class RerankDocument(Strict):
    text: str


class Rerank(Strict):
    """Cohere's and Jina's ``/v1/rerank``."""

    query: str
    documents: list[str | RerankDocument]
    model: str | None = None
    top_n: int | None = Field(default=None, gt=0)
    return_documents: bool = False


class TeiRerank(Strict):
    """text-embeddings-inference's ``/rerank``."""

    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = False
    truncation_direction: Literal["Right"] = "Right"


class Search(Strict):
    query: str
    k: int = Field(default=10, gt=0, le=1000)
    filter: dict[str, Any] | None = None
    mode: Literal["vector", "keyword", "sparse", "hybrid"] = "vector"
    weights: dict[Literal["vector", "keyword", "sparse"], float] | None = None
    rerank: bool = False
    rerank_candidates: int = Field(default=50, gt=0, le=1000)
    include_text: bool = False  # each hit's whole document too, beside its passage


class NewDocument(Strict):
    text: str
    id: str | None = None
    metadata: dict[str, Any] | None = None


class Add(Strict):
    documents: list[NewDocument] = Field(min_length=1)


class Get(Strict):
    ids: list[str] | None = None
    filter: dict[str, Any] | None = None
    limit: int | None = Field(default=None, ge=0, le=10_000)
    offset: int = Field(default=0, ge=0)


class Delete(Strict):
    ids: list[str] | None = None
    filter: dict[str, Any] | None = None
