"""Documents read from files, folders and globs: .txt, .md, .jsonl and .csv.

Used by the ``embedkit`` command. A bad input raises ValueError naming the file and line.

- ``.txt``: one document per line.
- ``.md``: one document per paragraph (lines up to a blank line; a fenced code block stays whole).
- ``.jsonl``: one object per line, with the text in ``field`` and optionally ``id`` and ``metadata``.
- ``.csv``: a header row, the text in column ``field``, optionally an ``id`` column; the other columns
  become metadata.

Each document's id is ``PATH:LINE``: the file's path as reached from the argument (the argument itself
for a file or a glob match, the folder argument joined with the path inside it for a folder), in forward
slashes, and the line where the document starts. A JSONL or CSV record's own ``id`` wins. Adding the
same folder again therefore finds the same ids, and two files of the same name never collide. Every
document's metadata gets ``source`` (that path) and, where the id holds it, ``line``, unless the record's
own metadata has them. Blank and whitespace-only documents are skipped and counted.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

SUFFIXES = (".txt", ".md", ".jsonl", ".csv")


@dataclass
class Document:
    id: str
    text: str
    metadata: dict = field(default_factory=dict)


@dataclass
class FileDocuments:
    source: str
    documents: list[Document]
    blank: int  # documents skipped because their text was blank


def find_files(paths: list[str]) -> list[tuple[str, str]]:
    """(file on disk, source name) for every file that ``paths`` (files, folders searched recursively,
    globs) name, each file once. A path that names nothing is an error."""
    found: dict[str, tuple[str, str]] = {}
    for arg in paths:
        if os.path.isdir(arg):
            matches = []
            for root, dirs, files in os.walk(arg):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                matches += [os.path.join(root, f) for f in sorted(files) if f.endswith(SUFFIXES)]
        elif os.path.isfile(arg):
            if not arg.endswith(SUFFIXES):
                raise ValueError(f"{arg}: unsupported file type; expected one of {', '.join(SUFFIXES)}")
            matches = [arg]
        elif glob.has_magic(arg):
            matches = [m for m in sorted(glob.glob(arg, recursive=True)) if os.path.isfile(m) and m.endswith(SUFFIXES)]
            if not matches:
                raise ValueError(f"{arg}: no {', '.join(SUFFIXES)} files match")
        else:
            raise ValueError(f"{arg}: no such file or folder")
        for path in matches:
            found.setdefault(os.path.realpath(path), (path, os.path.normpath(path).replace(os.sep, "/")))
    return list(found.values())


def read_file(path: str, source: str, field: str = "text") -> FileDocuments:
    """The documents of one file, named after ``source``."""
    reader = {".md": _markdown, ".jsonl": _jsonl, ".csv": _csv}.get(os.path.splitext(path)[1], _lines)
    documents, blank = [], 0
    with open(path, encoding="utf-8", newline="") as file:
        for line, doc_id, text, metadata in reader(file, path, field):
            if not text.strip():
                blank += 1
                continue
            named = {"source": source} if doc_id else {"source": source, "line": line}
            documents.append(Document(doc_id or f"{source}:{line}", text, {**named, **metadata}))
    return FileDocuments(source, documents, blank)


def iter_texts(path: str, field: str = "text") -> Iterator[str]:
    """Every text of one file (or ``-``, stdin, read as lines), blank ones included, so that row ``i`` of an
    embedding file is record ``i`` of its input."""
    if path == "-":
        yield from (line.rstrip("\r\n") for line in sys.stdin)
        return
    reader = {".jsonl": _jsonl, ".csv": _csv}.get(os.path.splitext(path)[1], _lines)
    with open(path, encoding="utf-8", newline="") as file:
        for _, _, text, _ in reader(file, path, field):
            yield text


def _lines(file, path: str, field: str):
    for n, line in enumerate(file, 1):
        yield n, None, line.rstrip("\r\n"), {}


def _markdown(file, path: str, field: str):
    start, lines, fenced = 0, [], False
    for n, line in enumerate(file, 1):
        line = line.rstrip("\r\n")
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not line.strip() and not fenced:
            if lines:
                yield start, None, "\n".join(lines), {}
            lines = []
            continue
        if not lines:
            start = n
        lines.append(line)
    if lines:
        yield start, None, "\n".join(lines), {}


def _jsonl(file, path: str, field: str):
    for n, line in enumerate(file, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            raise ValueError(f"{path}:{n}: expected an object with a string {field!r} field")
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError(f"{path}:{n}: 'metadata' must be an object")
        doc_id = record.get("id")
        if doc_id is not None and (not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or doc_id == ""):
            raise ValueError(f"{path}:{n}: 'id' must be a non-empty string or an integer, got {doc_id!r}")
        yield n, None if doc_id is None else str(doc_id), record[field], metadata


def _csv(file, path: str, field: str):
    rows = csv.DictReader(file)
    if rows.fieldnames is None or field not in rows.fieldnames:
        raise ValueError(f"{path}: no {field!r} column (columns: {rows.fieldnames or []})")
    line = rows.line_num + 1
    for row in rows:
        if None in row:
            raise ValueError(f"{path}:{line}: more values than the {len(rows.fieldnames)} columns of the header")
        text, doc_id = row.pop(field) or "", row.pop("id", None) or None
        yield line, doc_id, text, {k: v for k, v in row.items() if v is not None}
        line = rows.line_num + 1
