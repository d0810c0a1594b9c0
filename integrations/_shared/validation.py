"""Input checks shared by every store: ids, texts, metadata and vectors. Each error names the position
of the bad value, and nothing is written before every check passes."""

from __future__ import annotations

import functools
import json
import uuid

import numpy as np

from embedkit import _checks
from integrations._shared.chunk_rows import SEP
from integrations._shared.fusion import MODES
from integrations.errors import InvalidInputError, WrongTypeError

MAX_DEPTH = 100  # levels of nested dicts and lists in metadata: JSON libraries recurse once per level


def _as_store_error(check):
    """One of the encoder's argument checks, its TypeError and ValueError raised as the stores' own."""

    @functools.wraps(check)
    def checked(*args):
        try:
            return check(*args)
        except TypeError as exc:
            raise WrongTypeError(str(exc)) from None
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None

    return checked


check_texts = _as_store_error(_checks.check_texts)
check_positive_int = _as_store_error(_checks.check_positive_int)
check_non_negative_int = _as_store_error(_checks.check_non_negative_int)


def page(limit, offset, most: int) -> tuple[int | None, int]:
    """``limit`` (None: all) and ``offset`` checked as ints >= 0, each at most ``most``."""
    if limit is not None:
        check_non_negative_int("limit", limit)
        limit = min(limit, most)
    check_non_negative_int("offset", offset)
    return limit, min(offset, most)


def unit_vectors(embeddings, dimension: int, n: int | None) -> np.ndarray:
    """Float32 unit rows. Zero vectors have no direction, so every backend refuses them."""
    if embeddings is None:
        raise WrongTypeError("embeddings must be an array of shape [n, dim], got None")
    array = np.asarray(embeddings.cpu() if hasattr(embeddings, "cpu") else embeddings, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != dimension:
        raise InvalidInputError(f"embeddings must have shape [n, {dimension}], got {list(array.shape)}")
    if n is not None and array.shape[0] != n:
        raise InvalidInputError(f"got {array.shape[0]} embeddings for {n} texts")
    norms = np.sqrt(np.einsum("ij,ij->i", array, array))
    if np.isfinite(norms).all() and norms.all():
        return array / norms[:, None]
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise InvalidInputError(f"embedding at index {bad[0]} contains NaN or infinity")
    norms = np.linalg.norm(array.astype(np.float64), axis=1)  # a float32 norm of 3e38 overflows
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise InvalidInputError(f"embedding at index {zero[0]} is all zeros: it has no direction to compare")
    return (array / norms[:, None]).astype(np.float32)


def given_vectors(embeddings, texts, check) -> list:
    """Per text, its given vector (unit length, checked by ``check(array, n)``) or None where the caller
    left it to be embedded; ``embeddings`` is a list with a row or None per text, or an array."""
    if embeddings is None or isinstance(embeddings, (str, dict)):
        raise WrongTypeError(f"embeddings must be a list of vectors or None, got {type(embeddings).__name__}")
    rows = list(embeddings)
    if not isinstance(texts, (list, tuple)) or len(rows) != len(texts):
        n = len(texts) if isinstance(texts, (list, tuple)) else "the"
        raise InvalidInputError(f"got {len(rows)} embeddings for {n} texts")
    present = [i for i, row in enumerate(rows) if row is not None]
    checked = iter(check([rows[i] for i in present], len(present)) if present else [])
    return [None if row is None else next(checked) for row in rows]


def ids(values) -> list[str]:
    if isinstance(values, str) or values is None or isinstance(values, dict):
        raise WrongTypeError(f"ids must be a list of str, got {type(values).__name__}")
    values = list(values)
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise WrongTypeError(f"id at index {i} must be a non-empty str, got {value!r}")
        check_string(value, f"id at index {i}")
        if SEP in value:
            raise InvalidInputError(f"id at index {i} contains \\x1f, which joins a document id to its chunk numbers")
    return values


def batch(n: int, metadatas, doc_ids) -> tuple[list[str], list[str]]:
    """The metadata of ``n`` texts as stored JSON, and their ids: checked, defaulted (``{}`` and random ids),
    none twice."""
    if metadatas is None:
        metadatas = [{} for _ in range(n)]
    elif isinstance(metadatas, dict) or len(metadatas) != n:
        raise InvalidInputError(f"metadatas must be a list of {n} dicts")
    texts = flat_metadata(metadatas) or [metadata(m, i) for i, m in enumerate(metadatas)]
    if doc_ids is None:
        return texts, [uuid.uuid4().hex for _ in range(n)]
    doc_ids = ids(doc_ids)
    if len(doc_ids) != n:
        raise InvalidInputError(f"got {len(doc_ids)} ids for {n} texts")
    seen = set()
    for i, value in enumerate(doc_ids):
        if value in seen:
            raise InvalidInputError(f"id {value!r} at index {i} appears more than once in this batch")
        seen.add(value)
    return texts, doc_ids


def flat_metadata(values: list) -> list[str] | None:
    """The stored JSON of a batch of flat dicts (str keys; str, number, bool or null values), serialized and
    checked in one pass; None when any value might be something else, which ``metadata`` then checks dict by
    dict and names. Flat means no ``{`` or ``[`` but the dicts' own: nesting needs one. The batch is encoded as
    one list with NUL between items, which JSON never writes raw, so the dicts' borders are the NULs before a
    ``{`` and the NULs left are the dicts' own separators."""
    if not values or not all(type(v) is dict for v in values):
        return None
    try:
        joined = ENCODE_SPLITTABLE(values)
    except (TypeError, ValueError, RecursionError):
        return None
    flat = joined.count("{") == len(values) and "[" not in joined[1:] and "\\u0000" not in joined
    if not flat or not all(type(k) is str for v in values for k in v):  # JSON would turn other keys into str
        return None
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return None
    first, *rest = joined[1:-1].split("\x00{")
    return [text.replace("\x00", ", ") for text in (first, *("{" + text for text in rest))]


ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
ENCODE_SPLITTABLE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=("\x00", ": ")).encode


def metadata(value, i: int) -> str:
    """``value`` (a dict, or None for ``{}``) as the JSON text the stores keep, serialized once: non-ASCII kept
    as is, so that SQLite's JSON paths match non-ASCII keys. What JSON would not give back as it was (keys
    that are not str, tuples, NaN, other types) is refused, naming the position."""
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise WrongTypeError(f"metadata at index {i} must be a dict, got {type(value).__name__}")
    _check_json(value, i)
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metadata at index {i} is not JSON-serializable: {exc}") from None


def check_string(value: str, what: str) -> None:
    """Refuse what some backend cannot store: NUL characters and lone surrogates (not valid UTF-8)."""
    nul = value.find("\x00")
    if nul >= 0:
        raise InvalidInputError(f"{what} contains a NUL character at position {nul}")
    if (at := surrogate_at(value)) is not None:
        raise InvalidInputError(f"{what} contains a lone surrogate at position {at} (not valid UTF-8)")


def surrogate_at(value: str) -> int | None:
    """The position of the first lone surrogate in ``value`` (what is not valid UTF-8), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _check_json(obj, i: int) -> None:
    """Refuse what does not survive JSON unchanged, nesting deeper than ``MAX_DEPTH`` and strings some backend
    cannot store; walked without recursion."""
    level = [(obj, 1)]
    while level:
        value, depth = level.pop()
        if isinstance(value, str):
            check_string(value, f"metadata at index {i}")
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise InvalidInputError(f"metadata at index {i} nests more than {MAX_DEPTH} levels deep")
            if isinstance(value, dict):
                for key in value:
                    if not isinstance(key, str):
                        raise InvalidInputError(
                            f"metadata at index {i} does not survive JSON (keys must be str, got {key!r})"
                        )
                    check_string(key, f"metadata at index {i}")
            level.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
        elif isinstance(value, tuple):
            raise InvalidInputError(f"metadata at index {i} does not survive JSON (a tuple comes back as a list)")
        elif value is not None and not isinstance(value, (bool, int, float)):
            raise InvalidInputError(
                f"metadata at index {i} is not JSON-serializable: {type(value).__name__} {value!r:.40}"
            )


def texts(values, caller: str) -> list[str]:
    """The texts of a write (a list of str: a single str is refused, not split into characters)."""
    if isinstance(values, str):
        raise WrongTypeError(f"{caller} expects a list of texts, got a single str")
    values = check_texts(values, caller)
    for i, text in enumerate(values):
        check_string(text, f"{caller} text at index {i}")
    return values


def search_arguments(query, mode: str, rrf_k: int, candidates: int) -> list[str]:
    """The queries of a ``search()`` call (a str or a list of them), its mode and fusion settings checked."""
    queries = check_texts(query, "search()")
    for i, text in enumerate(queries):
        check_string(text, f"search() input at index {i}")
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
    check_positive_int("rrf_k", rrf_k)
    check_positive_int("candidates", candidates)
    return queries
