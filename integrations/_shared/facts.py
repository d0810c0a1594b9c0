"""What an index says about itself: ``info()`` and ``repr``, built from the same facts."""

from __future__ import annotations

from typing import Any


class Facts:
    """Mixed into ``Index``: a backend names where it lives and how it is built (``_settings``) and its
    bytes on disk (``_bytes_on_disk``)."""

    def info(self) -> dict[str, Any]:
        """What this index is: where it lives and how it is built, its documents, the model's name,
        dimension and prompts, how this open chunks new texts (``chunk_tokens`` 0: off), and its bytes on
        disk (None in memory). ``repr`` shows the same facts."""
        self._check_open()
        with self._guard():
            chunking = {"chunk_tokens": self.chunker.size, "chunk_overlap": getattr(self.chunker, "overlap", 0)}
            facts = {**self._settings(), "documents": len(self), **self.encoder_info, **chunking}
            return facts | {"bytes_on_disk": self._bytes_on_disk()}

    def __repr__(self) -> str:
        facts = {**self._settings(), "closed": True} if self.closed else self.info()
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in facts.items())})"

    def _settings(self) -> dict[str, Any]:
        """Where the index lives and how it is built (read without touching storage)."""
        return {}

    def _bytes_on_disk(self) -> int | None:
        return None


def metadata_fields(records, examples: int = 5) -> list[dict[str, Any]]:
    """The metadata fields of ``records``, the filterable ones: per field its name, how many of the records
    have it, its JSON types, and up to ``examples`` distinct plain values, in order of first appearance."""
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        for name, value in record.metadata.items():
            field = found.setdefault(name, {"name": name, "documents": 0, "types": [], "examples": []})
            field["documents"] += 1
            if (kind := _json_type(value)) not in field["types"]:
                field["types"].append(kind)
            plain = kind in ("string", "number", "boolean")
            if plain and len(field["examples"]) < examples and value not in field["examples"]:
                field["examples"].append(value)
    return sorted(found.values(), key=lambda f: (-f["documents"], f["name"]))


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")
