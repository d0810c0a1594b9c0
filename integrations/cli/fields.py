"""Which JSONL field or CSV column holds a record's text (``--text-field``) and its id (``--id-field``), per
file: each option is given as ``NAME`` (every file) or ``PATTERN=NAME`` (the files whose path inside the
folder they were found in, or whose name, matches the glob PATTERN), as often as needed; the last that
matches a file wins."""

from __future__ import annotations

import fnmatch
import os


class Fields:
    """One option's rules (``option``: its name, for messages; ``default``: the field where none matches)."""

    def __init__(self, option: str, specs: str | list[str] | None, default: str):
        self.option, self.default = option, default
        self.rules: list[tuple[str | None, str]] = []  # (pattern or None for every file, field)
        for spec in [specs] if isinstance(specs, str) else specs or []:
            pattern, sep, name = spec.partition("=") if "=" in spec else (None, "", spec)
            if not name or (sep and not pattern):
                raise ValueError(f"{option} {spec!r}: expected NAME or PATTERN=NAME, e.g. {option} 'faq/*.csv=answer'")
            self.rules.append((pattern or None, name))
        self.used: set[str] = set()

    def of(self, source: str, root: str) -> str:
        """The field of the file ``source``, found in the folder ``root``."""
        inside, name = os.path.relpath(source, root), os.path.basename(source)
        field = self.default
        for pattern, value in self.rules:
            if pattern is None or fnmatch.fnmatchcase(inside, pattern) or fnmatch.fnmatchcase(name, pattern):
                field = value
                if pattern is not None:
                    self.used.add(pattern)
        return field

    def check_used(self) -> None:
        """A pattern that matched no file is a mistake: say so before anything is read or written."""
        for pattern, name in self.rules:
            if pattern is not None and pattern not in self.used:
                raise ValueError(
                    f"{self.option} '{pattern}={name}': the pattern matches no .jsonl or .csv file found "
                    "(patterns match a file's path inside its folder, or its name)"
                )


class RecordFields:
    """The text and id fields of the JSONL and CSV files of one ``embedkit add``."""

    def __init__(self, text: str | list[str] | None, id_: str | list[str] | None):
        self.text, self.id = Fields("--text-field", text, "text"), Fields("--id-field", id_, "id")

    def of(self, found) -> dict:
        """``read_file``'s keywords for the file ``found`` (a ``readers.Found``): its fields, if it holds records."""
        if not found.path.lower().endswith((".jsonl", ".csv")):
            return {}
        return {"text_field": self.text.of(found.source, found.root), "id_field": self.id.of(found.source, found.root)}

    def check_used(self) -> None:
        self.text.check_used()
        self.id.check_used()
