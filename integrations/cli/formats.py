"""Text from HTML, reStructuredText, PDF and Word files, for ``embedkit add``, through the libraries made for
each (the ``documents`` extra): BeautifulSoup, docutils, pypdf and python-docx.

HTML, reST and Word files become Markdown-like text: headings as ``#`` lines (so that chunks and paragraphs
carry their heading path, as in Markdown files), paragraphs apart, code fenced. A PDF becomes its pages'
text, one document per page (``metadata["page"]``, from 1). A file the library cannot read is
``UndecodableFile`` (skipped and named); a missing library is an ImportError that names the install line.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading

from embedkit._optional import missing

KINDS = (".html", ".htm", ".rst", ".pdf", ".docx")
HEADINGS = {f"h{n}": n for n in range(1, 7)}
HTML_HIDDEN = ("script", "style", "noscript", "template", "nav", "aside", "footer", "head", "svg", "form")
HTML_BLOCKS = {
    *("p", "div", "section", "article", "main", "header", "body", "html", "blockquote", "figure", "figcaption"),
    *("ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "td", "th", "caption", "details"),
    *("summary", "address", "hr"),
}


class UndecodableFile(ValueError):
    """A file that is not text in the expected encoding, or not the kind of file its name says."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def as_markdown(kind: str, text: str, path: str) -> str:
    """The text of a file of ``kind`` read as ``text``, HTML, reST and Word made Markdown-like; other kinds'
    text as it is (a Word file is read from ``path``)."""
    if kind in (".html", ".htm"):
        return html_text(text)
    if kind == ".rst":
        return rst_text(text, path)
    return docx_text(path) if kind == ".docx" else text


def html_text(text: str) -> str:
    """The text a reader sees, headings kept; scripts, styles, navigation and asides dropped."""
    try:
        from bs4 import BeautifulSoup
        from bs4.element import NavigableString, PreformattedString
    except ImportError as exc:
        raise missing("bs4", "documents", "reading .html files") from exc
    soup = BeautifulSoup(text, "html.parser")
    for hidden in soup.find_all(HTML_HIDDEN):
        hidden.decompose()
    out: list[str] = []
    if soup.title and soup.title.string and not soup.find("h1"):
        out.append("# " + " ".join(soup.title.string.split()))

    def walk(node, words: list[str]) -> None:
        for child in node.children:
            if isinstance(child, PreformattedString):  # comments, the doctype, processing instructions
                continue
            if isinstance(child, NavigableString):
                words.append(str(child))
            elif child.name == "br":
                words.append(" ")
            elif child.name in HEADINGS:
                flush(words)
                out.append("#" * HEADINGS[child.name] + " " + " ".join(child.get_text(" ").split()))
            elif child.name == "pre":
                flush(words)
                out.append("```\n" + child.get_text().strip("\n") + "\n```")
            elif child.name in HTML_BLOCKS:
                flush(words)
                walk(child, words)
                flush(words)
            else:
                walk(child, words)

    def flush(words: list[str]) -> None:
        paragraph = " ".join("".join(words).split())
        if paragraph:
            out.append(paragraph)
        words.clear()

    words: list[str] = []
    walk(soup, words)
    flush(words)
    return "\n\n".join(out)


def rst_text(text: str, path: str) -> str:
    """reStructuredText through docutils: section titles as headings; Sphinx's roles and directives, which
    docutils does not know, keep their text (a role's title, a directive's argument and content)."""
    try:
        from docutils import nodes
        from docutils.core import publish_doctree
    except ImportError as exc:
        raise missing("docutils", "documents", "reading .rst files") from exc
    settings = {"report_level": 5, "halt_level": 5, "doctitle_xform": False, "file_insertion_enabled": False}
    settings |= {"raw_enabled": False, "warning_stream": io.StringIO(), "input_encoding": "unicode"}
    with _lenient_rst():
        tree = publish_doctree(text, source_path=path, settings_overrides=settings)
    out: list[str] = []
    skipped = (nodes.system_message, nodes.comment, nodes.target, nodes.substitution_definition, nodes.raw)

    def walk(node, depth: int) -> None:
        for child in node.children:
            if isinstance(child, skipped):
                continue
            if isinstance(child, nodes.section):
                walk(child, depth + 1)
            elif isinstance(child, nodes.title):
                out.append("#" * max(depth, 1) + " " + " ".join(child.astext().split()))
            elif isinstance(child, (nodes.literal_block, nodes.doctest_block)):
                out.append("```\n" + child.astext().strip("\n") + "\n```")
            elif isinstance(child, (nodes.paragraph, nodes.term, nodes.line, nodes.rubric)):
                out.append(" ".join(child.astext().split()))
            elif isinstance(child, nodes.Element):
                walk(child, depth)

    walk(tree, 0)
    return "\n\n".join(p for p in out if p.strip("# "))


def pdf_pages(path: str) -> list[str]:
    """Each page's text, in order."""
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise missing("pypdf", "documents", "reading .pdf files") from exc
    with _unreadable(path, "PDF"):
        return [page.extract_text() or "" for page in PdfReader(path).pages]


def docx_text(path: str) -> str:
    """A Word document's paragraphs and tables in order, its Heading and Title styles as headings."""
    try:
        import docx
    except ImportError as exc:
        raise missing("docx", "documents", "reading .docx files") from exc
    with _unreadable(path, "Word (.docx)"):
        document = docx.Document(path)
    out: list[str] = []
    for block in document.iter_inner_content():
        if hasattr(block, "rows"):  # a table: a paragraph per row
            out += [" | ".join(c.text.strip() for c in row.cells) for row in block.rows]
            continue
        text, style = " ".join(block.text.split()), block.style.name if block.style is not None else ""
        level = 1 if style == "Title" else int(m.group(1)) if (m := re.fullmatch(r"Heading (\d)", style)) else 0
        out.append("#" * level + " " + text if level and text else text)
    return "\n\n".join(p for p in out if p.strip())


@contextlib.contextmanager
def _unreadable(path: str, what: str):
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any failure of the parser means the file is not what it says
        raise UndecodableFile(path, f"not a readable {what} file ({type(exc).__name__}: {exc})") from None


_RST_LOCK = threading.Lock()


@contextlib.contextmanager
def _lenient_rst():
    """docutils' lookups of roles and directives, with a fallback for the names it does not know (Sphinx's
    ``:func:``, ``.. function::`` ...) that keeps their text instead of dropping it with an error."""
    from docutils import nodes
    from docutils.parsers.rst import Directive, directives, roles

    class Any(dict):
        def __getitem__(self, key):
            return directives.unchanged

    class Generic(Directive):
        optional_arguments, final_argument_whitespace, has_content = 100, True, True
        option_spec = Any(any=directives.unchanged)

        def run(self):
            found = [nodes.paragraph(text=" ".join(self.arguments))] if self.arguments else []
            if self.content:
                box = nodes.container()
                self.state.nested_parse(self.content, self.content_offset, box)
                found.append(box)
            return found

    def literal(name, rawtext, text, lineno, inliner, options=None, content=None):
        title = text.split(" <", 1)[0] if text.endswith(">") else text
        return [nodes.literal(rawtext, title.lstrip("~!"))], []

    find_directive, find_role = directives.directive, roles.role

    def directive(name, language, document):
        cls, messages = find_directive(name, language, document)
        return (cls, messages) if cls is not None else (Generic, [])

    def role(name, language, lineno, reporter):
        fn, messages = find_role(name, language, lineno, reporter)
        return (fn, messages) if fn is not None else (literal, [])

    with _RST_LOCK:
        directives.directive, roles.role = directive, role
        try:
            yield
        finally:
            directives.directive, roles.role = find_directive, find_role
