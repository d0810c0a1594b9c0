"""SentenceTransformer: an nn.Sequential of modules that turns text into embeddings."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import check_encode_options, encode_inputs
from ._encoding.batching import run, to_numpy, token_lengths
from ._encoding.npy_file import encode_to_file
from .hub import resolve_model_path
from .model_folder import load_folder, model_config, save_folder
from .modules import Transformer
from .modules.transformer import BACKENDS
from .pool import EncodePool
from .quantization import quantization_ranges, quantize_embeddings
from .similarity import PAIRWISE, SIMILARITY, SIMILARITY_FUNCTIONS

logger = logging.getLogger(__name__)

DOCUMENT_PROMPTS = ("document", "passage", "corpus")


def default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class SentenceTransformer(nn.Sequential):
    """Loads a sentence-transformers or plain Hugging Face model and encodes text.

    The API follows ``sentence_transformers.SentenceTransformer``: code written for it ports by
    changing the import.
    """

    accepts_token_ids = True  # encode() takes token ids made ahead (embedkit.chunking.Chunker.plan)
    model_type = "SentenceTransformer"  # what a saved folder says it holds

    def __init__(
        self,
        model_name_or_path: str | None = None,
        modules: Iterable[nn.Module] | None = None,
        device: str | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        cache_folder: str | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        token: bool | str | None = None,
        use_auth_token: bool | str | None = None,
        truncate_dim: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        local_files_only: bool = False,
        similarity_fn_name: str | None = None,
        backend: str = "torch",
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "onnx" and device not in (None, "cpu"):
            raise ValueError(f"the onnx backend runs on the CPU; got device={device!r}")
        saved: dict[str, Any] = {}
        if model_name_or_path is not None:
            if modules is not None:
                raise ValueError("Pass either model_name_or_path or modules, not both")
            path = resolve_model_path(
                model_name_or_path, cache_folder, revision, token or use_auth_token, local_files_only
            )
            extra = {"trust_remote_code": True} if trust_remote_code else {}
            modules, saved = load_folder(
                path,
                trust_remote_code=trust_remote_code,
                sparse=self.model_type == "SparseEncoder",
                model_kwargs={**(model_kwargs or {}), **extra},
                tokenizer_kwargs={**(tokenizer_kwargs or {}), **extra},
                config_kwargs={**(config_kwargs or {}), **extra},
                backend=backend,
            )
        elif modules is None:
            raise ValueError("SentenceTransformer needs a model_name_or_path or a list of modules")
        if not isinstance(modules, OrderedDict):
            modules = OrderedDict((str(i), m) for i, m in enumerate(modules))
        super().__init__(modules)
        self.model_name = model_name_or_path
        saved_prompts = {k: v for k, v in (saved.get("prompts") or {}).items() if v is not None}
        self.prompts = {**saved_prompts, **(prompts or {})}
        self.default_prompt_name = default_prompt_name or saved.get("default_prompt_name")
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ValueError(
                f"default_prompt_name {self.default_prompt_name!r} is not one of the prompts {sorted(self.prompts)}"
            )
        self.similarity_fn_name = similarity_fn_name or saved.get("similarity_fn_name")
        self.truncate_dim = None
        self.truncate_dim = self._check_truncate_dim(truncate_dim or saved.get("truncate_dim"))
        self.saved_config = saved  # config_sentence_transformers.json, for what a subclass reads of it
        ranges = saved.get("quantization_ranges")
        self.quantization_ranges = None if ranges is None else np.asarray(ranges, dtype=np.float32)
        # On CPU, run batches side by side, one torch thread each (see batching.in_parallel); False turns it off.
        self.parallel_batches = True
        self.backend = getattr(next(iter(self), None), "backend", "torch")  # the Transformer module's
        if self.backend != backend:
            raise ValueError(
                f"backend={backend!r} but the Transformer module was built with backend={self.backend!r}; "
                "pass backend= to Transformer(...)"
            )
        self.to("cpu" if self.backend == "onnx" else device or default_device())

    # ----------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def transformer(self) -> Transformer:
        first = self[0]
        if not isinstance(first, Transformer):
            raise AttributeError("The first module is not a Transformer")
        return first

    @property
    def tokenizer(self):
        return self.transformer.tokenizer

    @property
    def max_seq_length(self) -> int:
        return self.transformer.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.transformer.max_seq_length = value

    @property
    def similarity_fn_name(self) -> str:
        return self._similarity_fn_name or "cosine"

    @similarity_fn_name.setter
    def similarity_fn_name(self, value: str | None) -> None:
        value = getattr(value, "value", value)  # accept enum members
        if value is not None and value not in SIMILARITY_FUNCTIONS:
            raise ValueError(f"similarity_fn_name must be one of {SIMILARITY_FUNCTIONS}, got {value!r}")
        self._similarity_fn_name = value

    def get_sentence_embedding_dimension(self) -> int:
        dim = None
        for module in self:
            if hasattr(module, "get_sentence_embedding_dimension"):
                dim = module.get_sentence_embedding_dimension()
        if dim is None:
            raise AttributeError("No module defines the sentence embedding dimension")
        return min(dim, self.truncate_dim) if self.truncate_dim else dim

    get_embedding_dimension = get_sentence_embedding_dimension

    def _full_dimension(self) -> int:
        truncate, self.truncate_dim = self.truncate_dim, None
        try:
            return self.get_sentence_embedding_dimension()
        finally:
            self.truncate_dim = truncate

    def _check_truncate_dim(self, truncate_dim: int | None) -> int | None:
        if truncate_dim is None:
            return None
        full = self._full_dimension()
        if not isinstance(truncate_dim, int) or isinstance(truncate_dim, bool) or not 1 <= truncate_dim <= full:
            raise ValueError(
                f"truncate_dim must be an int between 1 and the embedding dimension {full}, got {truncate_dim!r}"
            )
        return truncate_dim

    # ----------------------------------------------------------------- encoding
    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        """Padded model inputs for ``texts``, truncated to ``max_seq_length``."""
        features = self.transformer.tokenize(list(texts))
        features.pop("num_truncated")
        lengths = token_lengths(features)
        return self.transformer.pad_to_tensors(features, np.arange(len(lengths)), lengths, self.device)

    @property
    def query_prompt(self) -> str:
        """The prompt ``encode_query`` applies: the model's ``"query"`` prompt, or none."""
        return self.prompts.get("query") or ""

    @property
    def document_prompt(self) -> str:
        """The prompt ``encode_document`` applies: the first non-empty ``"document"``, ``"passage"`` or
        ``"corpus"`` prompt. sentence-transformers 6.x saves an empty ``"document"`` placeholder beside a
        real ``"passage"`` prompt, so empty prompts are skipped rather than taken as the answer."""
        return next((self.prompts[n] for n in DOCUMENT_PROMPTS if self.prompts.get(n)), "")

    def encode_query(self, sentences, prompt_name: str | None = None, prompt: str | None = None, **kwargs):
        """Encode queries with ``query_prompt`` unless a prompt is given."""
        if prompt_name is None and prompt is None:
            prompt = self.query_prompt
        return self.encode(sentences, prompt_name=prompt_name, prompt=prompt, **kwargs)

    def encode_document(self, sentences, prompt_name: str | None = None, prompt: str | None = None, **kwargs):
        """Encode documents with ``document_prompt`` unless a prompt is given."""
        if prompt_name is None and prompt is None:
            prompt = self.document_prompt
        return self.encode(sentences, prompt_name=prompt_name, prompt=prompt, **kwargs)

    def encode_to_file(self, sentences, path: str, chunk_size: int = 10000, resume: bool = False, **kwargs):
        """Stream the embeddings of any iterable of texts into a .npy file with bounded memory; ``resume``
        continues an interrupted run. Returns a read-only memmap. See ``embedkit._encoding.npy_file``."""
        return encode_to_file(self, sentences, path, chunk_size=chunk_size, resume=resume, **kwargs)

    def encode(
        self,
        sentences=None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: str | None = "sentence_embedding",
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | list[str] | None = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        pool: EncodePool | None = None,
        chunk_size: int | None = None,
        max_batch_tokens: int | None = None,
        token_ids: list[list[int] | None] | None = None,
        **kwargs,
    ):
        """Embed one text (1-D result) or a list of texts (2-D result, input order kept).

        ``pool`` spreads the work over a process pool (see ``start_multi_process_pool``); a list of
        ``device``s starts one for this call and stops it afterwards;
        ``max_batch_tokens`` caps the padded tokens of a batch, on top of ``batch_size``; ``token_ids``
        gives, per sentence, the ids the tokenizer makes of it (prompt and special tokens included; None
        where not known; longer ones are cut as the text would be), used instead of tokenizing it again
        (``embedkit.chunking.Chunker.plan`` makes them).
        """
        single, texts, token_ids = encode_inputs(self, sentences, kwargs, token_ids, pool, device)
        check_encode_options(batch_size, max_batch_tokens, precision, output_value, pool)
        truncate_dim = self._check_truncate_dim(truncate_dim) if truncate_dim is not None else self.truncate_dim
        prompt = self._resolve_prompt(prompt, prompt_name)
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        own_pool = None
        if isinstance(device, (list, tuple)):  # sentence-transformers 6: a pool for this call only
            if pool is not None:
                raise ValueError("pass either pool or a list of devices, not both")
            if output_value != "sentence_embedding":
                raise ValueError(
                    "a list of devices returns sentence embeddings only (output_value='sentence_embedding')"
                )
            pool = own_pool = EncodePool(self, list(device)) if texts else None
        elif device is not None:
            self.to(device)

        if pool is not None:
            options = {
                "convert_to_numpy": True,
                "prompt": prompt,
                "batch_size": batch_size,
                "truncate_dim": truncate_dim,
                "normalize_embeddings": normalize_embeddings,
                "max_batch_tokens": max_batch_tokens,
            }
            try:
                emb = torch.from_numpy(pool.map(texts, chunk_size, show_progress_bar, **options)) if texts else None
            finally:
                if own_pool is not None:
                    own_pool.stop()
        else:
            emb = run(self, texts, prompt, batch_size, max_batch_tokens, output_value, show_progress_bar, token_ids)
            if output_value != "sentence_embedding":
                return emb[0] if single else emb
            if emb is not None and truncate_dim is not None:
                emb = emb[:, :truncate_dim]
            if emb is not None and normalize_embeddings:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        if emb is None:
            emb = torch.zeros(0, truncate_dim or self._full_dimension(), device=self.device)
        if precision != "float32":
            emb = torch.from_numpy(self._quantize(to_numpy(emb), precision))
        if convert_to_tensor:
            result = emb.cpu() if convert_to_numpy else emb
        elif convert_to_numpy:
            result = to_numpy(emb)
        else:
            result = list(emb)
        return result[0] if single else result

    def encode_multi_process(
        self,
        sentences,
        pool: EncodePool,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        chunk_size: int | None = None,
        precision: str = "float32",
        normalize_embeddings: bool = False,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray:
        """``encode`` over a pool of processes (sentence-transformers' name for it)."""
        return self.encode(
            sentences,
            prompt_name=prompt_name,
            prompt=prompt,
            batch_size=batch_size,
            pool=pool,
            chunk_size=chunk_size,
            precision=precision,
            normalize_embeddings=normalize_embeddings,
            show_progress_bar=show_progress_bar,
        )

    def start_multi_process_pool(self, target_devices: list[str] | None = None) -> EncodePool:
        """Start worker processes: one per CUDA device by default, else CPU workers sharing the cores."""
        return EncodePool(self, target_devices)

    @staticmethod
    def stop_multi_process_pool(pool: EncodePool) -> None:
        pool.stop()

    def _resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return None
        if name not in self.prompts:
            raise ValueError(f"Unknown prompt_name {name!r}; this model's prompts are {sorted(self.prompts)}")
        return self.prompts[name]

    def _quantize(self, emb: np.ndarray, precision: str) -> np.ndarray:
        ranges = self.quantization_ranges
        if ranges is not None and precision in ("int8", "uint8"):
            if ranges.shape[1] < emb.shape[1]:
                raise ValueError(
                    f"Saved quantization ranges cover {ranges.shape[1]} dims, embeddings have {emb.shape[1]}"
                )
            ranges = ranges[:, : emb.shape[1]]
        return quantize_embeddings(emb, precision, ranges=ranges)

    # ----------------------------------------------------------------- similarity
    def similarity(self, embeddings1, embeddings2) -> Tensor:
        """Matrix of scores between all pairs, with ``similarity_fn_name``."""
        return SIMILARITY[self.similarity_fn_name](embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1, embeddings2) -> Tensor:
        """Scores of ``embeddings1[i]`` against ``embeddings2[i]``."""
        return PAIRWISE[self.similarity_fn_name](embeddings1, embeddings2)

    # ----------------------------------------------------------------- quantization ranges
    def set_quantization_ranges(self, ranges=None, calibration_embeddings=None) -> None:
        """Keep int8/uint8 ranges (shape (2, dim)) with the model, so single queries quantize like the corpus.

        Pass ``ranges`` or ``calibration_embeddings`` (float embeddings encoded with the same settings as
        the ones you will quantize); pass neither to clear them. They are saved with the model.
        """
        if calibration_embeddings is not None:
            ranges = quantization_ranges(calibration_embeddings)
        if ranges is None:
            self.quantization_ranges = None
            return
        ranges = np.asarray(ranges, dtype=np.float32)
        if ranges.ndim != 2 or ranges.shape[0] != 2 or ranges.shape[1] > self._full_dimension():
            raise ValueError(
                f"ranges must have shape (2, dim) with dim <= {self._full_dimension()}, got {ranges.shape}"
            )
        if np.any(ranges[0] > ranges[1]):
            raise ValueError("ranges[0] (minimums) must not exceed ranges[1] (maximums)")
        self.quantization_ranges = ranges

    # ----------------------------------------------------------------- saving
    def save(self, path: str, **_ignored) -> None:
        """Write a sentence-transformers folder (safetensors weights) to ``path``."""
        save_folder(list(self), path, model_config(self))

    save_pretrained = save


__all__ = ["SentenceTransformer", "default_device"]
