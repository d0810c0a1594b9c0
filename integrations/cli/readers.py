"""Documents read from files, folders and globs: .txt, .md, .jsonl and .csv, and through
``integrations.cli.formats`` .html, .rst (and .rst.txt), .pdf and .docx.

Used by the ``embedkit`` command. A bad record raises ValueError naming the file and line.

Units (``unit``), for .txt and .md:
- ``file`` (the default): the whole file is one document, which the index chunks by tokens;
- ``paragraph``: one document per paragraph (lines up to a blank line; a fenced code block stays whole).
  In Markdown a heading is not a document of its own: the paragraphs under it carry the heading path in
  ``metadata["headings"]``. Ids are ``SOURCE#HASH`` of the paragraph's text, so inserting text above
  leaves the others' ids alone;
- ``line``: one document per line, ids ``SOURCE:LINE``.
``.jsonl`` holds one object per line: the text in ``text_field``, the id in ``id_field``, every other
top-level field as metadata (``metadata``, an object, is merged in too). ``.csv`` has a header row: the
text in column ``text_field``, the id in ``id_field``; the other columns become metadata. A record's
document id is ``SOURCE#ID`` (its own id kept in its metadata under ``id_field``), or ``SOURCE:LINE``
without one, so two files may use the same ids.

Sources are paths: a file found under a folder argument is named ``ROOT/PATH/IN/IT``, where ROOT is the
folder resolved (whatever spelling reached it: ``../kb``, ``kb``, an absolute path), so two folders of the
same name never share a source or an id; a file argument is named after its folder resolved the same way,
and a glob match after the folder its pattern starts in. Every document's metadata gets ``source`` and
``root`` (the folder: what ``embedkit add`` prunes by). Files are read as ``encoding`` (UTF-8 by default,
a BOM dropped); a file that does not decode, or holds NUL bytes, is skipped and named (``UndecodableFile``).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from integrations._shared.hit_view import MARKDOWN, kind_of
from integrations.cli import formats
from integrations.cli.formats import UndecodableFile

SUFFIXES = (".txt", ".md", ".jsonl", ".csv", *formats.KINDS)
UNITS = ("file", "paragraph", "line")


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
    root: str | None = None


@dataclass(frozen=True)
class Found:
    path: str  # on disk
    source: str  # the canonical name
    root: str  # the resolved folder it is named from
    pruned: bool  # found by walking a folder or a glob: its root's vanished files may be pruned


class Trouble(NamedTuple):
    path: str
    kind: str  # what the summary counts: unlisted, unreadable, undecodable, dangling symlink, ...
    why: str


class PartialSync(RuntimeError):
    """``embedkit add`` wrote what it could read, and kept as they were the documents of paths it could not
    list or read, and of a folder that holds no files (exit status 6)."""


def find_files(paths: list[str]) -> Listing:
    """Every file that ``paths`` (files, folders searched recursively, globs) name, each once, with what
    was left out (see ``Listing``). A path that names nothing is an error."""
    listing = Listing()
    found: dict[str, Found] = {}
    for arg in paths:
        if os.path.isdir(arg):
            root = os.path.realpath(arg)
            if not _utf8(root):
                raise ValueError(f"{shown(root)}: the folder's name is not UTF-8; rename it or give it by another name")
            listing.roots.append(root)
            _walk(root, found, listing)
        elif os.path.isfile(arg):
            if not arg.lower().endswith(SUFFIXES):
                raise ValueError(f"{arg}: unsupported file type; expected one of {', '.join(SUFFIXES)}")
            _found(found, arg, os.path.dirname(os.path.abspath(arg)), False)
        elif glob.has_magic(arg):
            matches = [
                m for m in sorted(glob.glob(arg, recursive=True)) if os.path.isfile(m) and m.lower().endswith(SUFFIXES)
            ]
            if not matches:
                raise ValueError(f"{arg}: no {', '.join(SUFFIXES)} files match")
            for m in matches:
                _found(found, m, _fixed_prefix(arg), False)
        else:
            raise ValueError(f"{arg}: no such file or folder")
    odd = [f for f in found.values() if not _utf8(f.source)]
    for f in odd:  # a file argument or glob match whose name is not UTF-8
        listing.trouble.append(Trouble(f.source, "name not UTF-8", "the name is not UTF-8"))
    listing.found = [f for f in found.values() if _utf8(f.source)]
    return listing


@dataclass
class Listing:
    """What ``find_files`` found: the files; the folders walked (``roots``, resolved); files left out that
    are no part of an index (``skipped``, counted by reason: unsupported type); and ``trouble``: (path,
    kind, reason) for what is there but could not be listed or taken (a folder that cannot be listed, a dangling
    symlink, a name that is not UTF-8). Whatever the index holds under a path in ``trouble`` must be kept."""

    found: list[Found] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    trouble: list[Trouble] = field(default_factory=list)
    named: dict[str, list[str]] = field(default_factory=dict)  # reason -> the paths skipped or noted for it

    def note(self, path: str, reason: str, skipped: bool = True) -> None:
        """Name ``path`` under ``reason`` (and count it as skipped, unless it was taken all the same)."""
        self.named.setdefault(reason, []).append(path)
        if skipped:
            self.skipped[reason] += 1

    def untouchable(self, source: str) -> bool:
        """Whether ``source`` is, or lies under, a path in ``trouble``."""
        return any(source == t.path or source.startswith(t.path.rstrip("/") + "/") for t in self.trouble)


def _walk(root: str, found: dict[str, Found], listing: Listing) -> None:
    def unlisted(exc: OSError) -> None:
        listing.trouble.append(Trouble(exc.filename or root, "unlisted", f"cannot be listed ({exc.strerror or exc})"))

    for folder, dirs, files in os.walk(root, onerror=unlisted):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in [d for d in dirs if os.path.islink(os.path.join(folder, d))]:  # os.walk does not follow them
            listing.note(os.path.join(folder, name), "symlinked folder, not followed (give it as an argument)")
        for name in [d for d in dirs if not _utf8(d)]:
            listing.trouble.append(Trouble(os.path.join(folder, name), "name not UTF-8", "the name is not UTF-8"))
            dirs.remove(name)
        for name in sorted(files):
            path = os.path.join(folder, name)
            if name.startswith("."):
                continue
            if not name.lower().endswith(SUFFIXES):
                listing.note(path, "unsupported type")
            elif not _utf8(name):
                listing.trouble.append(Trouble(path, "name not UTF-8", "the name is not UTF-8"))
            elif os.path.isfile(path):
                _found(found, path, root, True)
                if os.path.islink(path) and not os.path.realpath(path).startswith(root + os.sep):
                    listing.note(path, "followed out of the folder (a symlink)", skipped=False)
            elif os.path.islink(path):
                listing.trouble.append(Trouble(path, "dangling symlink", "a symlink to nothing"))
            elif os.path.lexists(path):
                listing.trouble.append(Trouble(path, "not a file", "not a regular file"))
            # else: gone since the folder was listed


def _found(found: dict[str, Found], path: str, folder: str, pruned: bool) -> None:
    """Record ``path``, named after the resolved ``folder`` it was reached from (each file once)."""
    root = os.path.realpath(folder)
    source = os.path.join(root, os.path.relpath(os.path.abspath(path), os.path.abspath(folder)))
    found.setdefault(os.path.realpath(path), Found(path, source, root, pruned))


def _utf8(name: str) -> bool:
    """Whether a name from the file system is valid UTF-8 (Python keeps other bytes as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(path: str) -> str:
    """A path as it can be printed: bytes that are not UTF-8 as escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def current_source(source, root: str):
    """A stored ``source`` as this CLI names it: the 0.2 CLI named files ``FOLDERNAME/PATH`` under ``root``."""
    if not isinstance(source, str) or source.startswith(root + "/"):
        return source
    name, _, inside = source.partition("/")
    return os.path.join(root, inside) if name == (os.path.basename(root) or "root") and inside else source


def _fixed_prefix(pattern: str) -> str:
    """The folder a glob starts in: its parts before the first with a wildcard."""
    parts = []
    for part in pattern.replace(os.sep, "/").split("/"):
        if glob.has_magic(part):
            break
        parts.append(part)
    return "/".join(parts) or "."


def read_file(
    path: str,
    source: str,
    text_field: str = "text",
    *,
    unit: str = "file",
    id_field: str = "id",
    encoding: str = "utf-8",
    root: str | None = None,
) -> FileDocuments:
    """The documents of one file, named after ``source``."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    kind = kind_of(path)
    text = "" if kind in (".pdf", ".docx") else read_text(path, encoding)
    if kind in (".jsonl", ".csv"):
        records = (_jsonl if kind == ".jsonl" else _csv)(io.StringIO(text, newline=None), path, text_field, id_field)
    elif kind == ".pdf":
        records = _pages(formats.pdf_pages(path), source, unit)
    else:
        records = _units(formats.as_markdown(kind, text, path), source, unit, kind in MARKDOWN)
    documents, blank, seen = [], 0, Counter()
    for line, doc_id, body, metadata in records:
        if not body.strip():
            blank += 1
            continue
        base = {"source": source} if root is None else {"source": source, "root": root}
        if line is not None:
            base["line"] = line
        if doc_id is not None and kind in (".jsonl", ".csv"):  # namespaced by its file: files may share ids
            doc_id = f"{source}#{doc_id}"
        doc_id = doc_id or (f"{source}:{line}" if line is not None else source)
        seen[doc_id] += 1
        if seen[doc_id] > 1 and unit == "paragraph":  # the same paragraph twice in a file
            doc_id = f"{doc_id}-{seen[doc_id]}"
        documents.append(Document(doc_id, body, {**base, **metadata}))
    return FileDocuments(source, documents, blank, root)


def read_text(path: str, encoding: str = "utf-8") -> str:
    """The file's text, a BOM dropped; UndecodableFile for bytes that are not text in ``encoding``."""
    with open(path, "rb") as file:
        data = file.read()
    if b"\0" in data and not encoding.lower().startswith("utf-16"):
        raise UndecodableFile(path, "holds NUL bytes (binary, not text)")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UndecodableFile(path, f"not {encoding} text (byte {exc.start}: {exc.reason}); try --encoding") from None
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}") from None
    return text.removeprefix("\ufeff")


def iter_texts(path: str, field: str = "text") -> Iterator[str]:
    """Every text of one file (or ``-``, stdin, read as lines), blank ones included, so that row ``i`` of an
    embedding file is record ``i`` of its input."""
    if path == "-":
        yield from (line.rstrip("\r\n") for line in sys.stdin)
        return
    kind = os.path.splitext(path)[1]
    text = read_text(path)
    if kind in (".jsonl", ".csv"):
        for _, _, body, _ in (_jsonl if kind == ".jsonl" else _csv)(io.StringIO(text, newline=None), path, field, "id"):
            yield body
    else:
        yield from text.splitlines()


def _units(text: str, source: str, unit: str, markdown: bool):
    if unit == "file":
        yield None, None, text.strip("\n"), {}
    elif unit == "line":
        for n, line in enumerate(text.splitlines(), 1):
            yield n, None, line, {}
    else:
        headings: list[tuple[int, str]] = []
        for start, paragraph in _paragraphs(text):
            first = paragraph.split("\n", 1)[0]
            if markdown and first.startswith("#") and first.lstrip("#").startswith(" "):
                level = len(first) - len(first.lstrip("#"))
                headings = [h for h in headings if h[0] < level] + [(level, first.lstrip("#").strip())]
                paragraph = paragraph.split("\n", 1)[1] if "\n" in paragraph else ""
                if not paragraph.strip():
                    continue
            digest = hashlib.sha1(paragraph.encode()).hexdigest()[:12]
            metadata = {"headings": [h for _, h in headings]} if markdown and headings else {}
            yield start, f"{source}#{digest}", paragraph, metadata


def _pages(pages: list[str], source: str, unit: str):
    """A PDF's units, page by page: ids ``SOURCE#pN`` (and ``SOURCE#pN:LINE`` or ``SOURCE#pN#HASH``), the page
    number in ``metadata["page"]``."""
    for n, page in enumerate(pages, 1):
        name = f"{source}#p{n}"
        for line, doc_id, body, metadata in _units(page, name, unit, False):
            doc_id = doc_id or (name if line is None else f"{name}:{line}")
            yield line, doc_id, body, {"page": n, **metadata}


def _paragraphs(text: str):
    start, lines, fenced = 0, [], False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not line.strip() and not fenced:
            if lines:
                yield start, "\n".join(lines)
            lines = []
            continue
        if not lines:
            start = n
        lines.append(line)
    if lines:
        yield start, "\n".join(lines)


def _jsonl(file, path: str, text_field: str, id_field: str):
    for n, line in enumerate(file, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            fields = f" (its fields: {', '.join(sorted(record))})" if isinstance(record, dict) else ""
            raise ValueError(
                f"{path}:{n}: expected an object with a string {text_field!r} field{fields}; "
                "--text-field NAME (or PATTERN=NAME for some files) names the field that holds the text"
            )
        nested = record.get("metadata") or {}
        if not isinstance(nested, dict):
            raise ValueError(f"{path}:{n}: 'metadata' must be an object")
        doc_id = record.get(id_field)
        if doc_id is not None and (not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or doc_id == ""):
            raise ValueError(f"{path}:{n}: {id_field!r} must be a non-empty string or an integer, got {doc_id!r}")
        fields = {k: v for k, v in record.items() if k not in (text_field, id_field, "metadata")}
        own = None if doc_id is None else str(doc_id)
        yield (n if own is None else None), own, record[text_field], {**fields, **nested, **_own(id_field, own)}


def _own(id_field: str, own: str | None) -> dict:
    """A record's own id, kept in its metadata under its field's name (its document id is namespaced)."""
    return {} if own is None else {id_field: own}


def _csv(file, path: str, text_field: str, id_field: str):
    rows = csv.DictReader(file)
    if rows.fieldnames is None or text_field not in rows.fieldnames:
        raise ValueError(
            f"{path}: no {text_field!r} column (columns: {rows.fieldnames or []}); --text-field NAME (or "
            "PATTERN=NAME for some files) names the column that holds the text"
        )
    line = rows.line_num + 1
    for row in rows:
        if None in row:
            raise ValueError(f"{path}:{line}: more values than the {len(rows.fieldnames)} columns of the header")
        text, doc_id = row.pop(text_field) or "", row.pop(id_field, None) or None
        metadata = {k: v for k, v in row.items() if v is not None}
        yield (line if doc_id is None else None), doc_id, text, {**metadata, **_own(id_field, doc_id)}
        line = rows.line_num + 1
