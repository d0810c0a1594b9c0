"""The commands that look inside an index: info, list, get, delete and prune."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections import Counter
from collections.abc import Callable

from integrations._shared.facts import metadata_fields
from integrations.cli.readers import current_source
from integrations.targets import open_index, recorded_model


def _open(args, load_model: Callable):
    """The index opened with the model it records standing in (nothing here embeds), so that no model
    loads; an index that records none (an embedkit 0.1 folder) is opened with ``--model``."""
    return open_index(args.db, recorded_model(args.db) or load_model(), create=False)


def _filter(args) -> dict | None:
    try:
        return json.loads(args.filter) if getattr(args, "filter", None) else None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--filter is not valid JSON: {exc.msg}") from None


def warn_unknown_fields(index, filter: dict | None) -> None:
    """Name each field of ``filter`` that no document has: a misspelt field would match nothing, silently."""
    for field in fields_of(filter):
        if not index.get(filter={field: {"$exists": True}}, limit=1):
            print(
                f"warning: no document has the field {field!r}; the filter's conditions on it match nothing",
                file=sys.stderr,
            )


def fields_of(node) -> list[str]:
    """The metadata fields a filter names, inside ``$and``, ``$or`` and ``$not`` too."""
    found: list[str] = []
    for key, value in node.items() if isinstance(node, dict) else ():
        if key in ("$and", "$or") and isinstance(value, list):
            found += [f for part in value for f in fields_of(part)]
        elif key == "$not":
            found += fields_of(value)
        elif not key.startswith("$"):
            found.append(key)
    return list(dict.fromkeys(found))


def cmd_info(args, load_model: Callable) -> None:
    sources = Counter()

    def counted(records):
        for record in records:
            sources[record.metadata.get("source", "(none)")] += 1
            yield record

    with _open(args, load_model) as index:
        fields = metadata_fields(counted(index))
        facts = {"store": type(index).__name__, **index.info(), "sources": len(sources)}
    for how_this_open_chunks in ("chunk_tokens", "chunk_overlap"):  # not a property of the stored index
        del facts[how_this_open_chunks]
    if args.json:
        per_source = dict(sources.most_common())
        print(json.dumps({**facts, "fields": fields, "documents_per_source": per_source}, ensure_ascii=False))
        return
    for key, value in facts.items():
        print(f"{key:>14}: {value}")
    listed = ", ".join(f"{f['name']} ({f['documents']}, {'/'.join(f['types'])})" for f in fields)
    print(f"{'fields':>14}: {listed or '(none)'}")
    for source, n in sources.most_common(args.sources):
        print(f"{n:>14}  {source}")
    if len(sources) > args.sources:
        print(f"{'':>14}  ... and {len(sources) - args.sources} more sources (--sources N shows more)")


def cmd_list(args, load_model: Callable) -> None:
    flt = _filter(args)
    with _open(args, load_model) as index:
        records = index.get(filter=flt, limit=args.limit, offset=args.offset)
        warn_unknown_fields(index, flt)
    for record in records:
        print(record.id if not args.json else json.dumps({"id": record.id, "metadata": record.metadata}))


def cmd_get(args, load_model: Callable) -> None:
    with _open(args, load_model) as index:
        records = {r.id: r for r in index.get(args.ids)}
    missing = [i for i in args.ids if i not in records]
    for i in args.ids:
        if i in records:
            r = records[i]
            print(json.dumps({"id": r.id, "text": r.text, "metadata": r.metadata}, ensure_ascii=False))
    if missing:
        raise KeyError(f"no documents with ids {missing}")


def cmd_delete(args, load_model: Callable) -> None:
    flt = _filter(args)
    if not args.ids and flt is None:
        raise ValueError("delete needs ids, --filter or both")
    with _open(args, load_model) as index:
        deleted = index.delete(args.ids or None, filter=flt)
        warn_unknown_fields(index, flt)
        index.save()
        total = len(index)
    print(f"{args.db}: {deleted} deleted; {total} documents in total", file=sys.stderr)


def cmd_prune(args, load_model: Callable) -> None:
    """Delete the documents whose source file is known to be gone (see ``_vanished``)."""
    with _open(args, load_model) as index:
        listable = functools.cache(_listable)
        gone = [r.id for r in index if _vanished(r.metadata, listable)]
        deleted = index.delete(gone) if gone else 0
        index.save()
        total = len(index)
    print(f"{args.db}: {deleted} documents of vanished files deleted; {total} documents in total", file=sys.stderr)


def _vanished(metadata: dict, listable: Callable[[str], bool]) -> bool:
    """Whether a document's file is gone: looking it up says it does not exist (not that it cannot be
    read), and its folder ``root`` lists and holds something (an unmounted share's empty mount point
    does not). ``source`` and ``root`` as ``embedkit add`` records them; without ``root``, ``source`` is
    read from the current folder."""
    source, root = metadata.get("source"), metadata.get("root")
    if not isinstance(source, str):
        return False
    if isinstance(root, str):
        if not listable(root):
            return False
        source = current_source(source, root)
    try:
        os.stat(source)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:  # cannot be read now: not known to be gone
        return False
    return False


def _listable(folder: str) -> bool:
    try:
        return bool(os.listdir(folder))
    except OSError:
        return False
