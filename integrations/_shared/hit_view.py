"""How a hit is shown: passage first. The HTTP search, ``embedkit search`` and the search page show a hit's
passage (its best chunk) with the query's words highlighted, the Markdown heading path it sits under and its
source file; the whole document only when asked (``include_text``, ``--full``, the page's "whole document").
"""

from __future__ import annotations

import re

MARKDOWN = (".md", ".html", ".htm", ".rst", ".docx")  # kinds whose text has (or was given) Markdown headings


def kind_of(path: str) -> str:
    """The file's kind by its name: ``.rst`` for Sphinx's ``.rst.txt`` sources too."""
    lower = path.lower()
    return ".rst" if lower.endswith(".rst.txt") else "." + lower.rpartition(".")[2]


def has_headings(source) -> bool:
    """Whether a document of ``source`` is Markdown, or was made Markdown-like (``#`` headings) on reading."""
    return isinstance(source, str) and kind_of(source) in MARKDOWN


def headings_at(text: str, offset: int, above: list[str] = ()) -> list[str]:
    """The Markdown heading path in force at character ``offset`` of ``text`` (outside fenced code).
    ``above`` is the path in force where ``text`` starts (a part of a longer file), taken as levels 1, 2, ..."""
    path: list[tuple[int, str]] = list(enumerate(above, 1))
    fenced = False
    for line in text[:offset].splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and line.startswith("#") and line.lstrip("#").startswith(" "):
            level = len(line) - len(line.lstrip("#"))
            path = [h for h in path if h[0] < level] + [(level, line.lstrip("#").strip())]
    return [title for _, title in path]


def heading_path(hit) -> list[str]:
    """The headings a hit's passage sits under: where its highlighted words are densest, else after the
    passage's first line (so a passage that opens with a heading is under it). A document of a file that
    is not Markdown-like has only the path stored with it (``metadata["headings"]``, from reading by
    paragraphs or in parts)."""
    above = hit.metadata.get("headings")
    above = [h for h in above if isinstance(h, str)] if isinstance(above, list) else []
    if not has_headings(hit.metadata.get("source")):
        return above
    start, passage = (hit.span or (0, 0))[0], hit.passage
    offset = focus(hit.highlights)
    offset = len(passage.split("\n", 1)[0]) + 1 if offset is None else offset
    at = start + min(offset, len(passage))
    line_end = hit.text.find("\n", at)  # a heading that holds the match is in force there
    return headings_at(hit.text, len(hit.text) if line_end < 0 else line_end, above)


def focus(highlights: list[tuple[int, int]], width: int = 100) -> int | None:
    """Where the passage's matches are densest: the start of the highlight that opens the ``width``
    characters holding the most highlights (the first such); None without highlights."""
    starts = [start for start, _ in highlights]
    if not starts:
        return None
    return max(starts, key=lambda a: (sum(a <= b < a + width for b in starts), -a))


def as_json(hit, include_text: bool = False) -> dict:
    """A hit as JSON: its passage, highlights, heading path and source; its whole text with ``include_text``."""
    view = {
        "id": hit.id,
        "score": hit.score,
        "passage": hit.passage,
        "highlights": [list(h) for h in hit.highlights],
        "headings": heading_path(hit),
        "source": hit.metadata.get("source"),
        "span": list(hit.span) if hit.span is not None else None,
        "metadata": hit.metadata,
        "ranks": hit.ranks,
        "scores": hit.scores,
    }
    return view | ({"text": hit.text} if include_text else {})


def snippet(hit, width: int = 100, mark=lambda word: word) -> str:
    """About ``width`` characters of the passage on one line, from a little before where its highlighted
    words are densest (from its start when none is), with ``mark`` applied to each highlighted word;
    ``...`` where cut."""
    passage, marks = hit.passage, hit.highlights
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", passage)]
    if not words:
        return ""
    first = 0
    if (at := focus(marks, width)) is not None:
        first = next(i for i, (_, end) in enumerate(words) if end > at)
        while first and at - words[first - 1][0] <= width // 4:  # some words of context before it
            first -= 1
    out, used = [], 0
    for start, end in words[first:]:
        if used + end - start > width and out:
            break
        word = passage[start:end]
        out.append(mark(word) if any(a < end and start < b for a, b in marks) else word)
        used += end - start + 1
    cut = first + len(out) < len(words)
    return ("..." if first else "") + " ".join(out) + ("..." if cut else "")
