"""``embedkit add`` over a folder of the formats people have: HTML, reStructuredText (and Sphinx's
``.rst.txt``), PDF and Word files, each made here by its own library (fpdf2 writes the PDF, python-docx the
Word file, docutils reads the reST, BeautifulSoup the HTML), beside Markdown and text. Each document holds
the text a reader sees, with its heading path (a PDF's pages are documents with their page numbers);
unsupported files, symlinks out of the folder and unreadable files are named."""

from __future__ import annotations

import json

import pytest

HTML = """<!doctype html><html><head><title>Tea guide</title><style>p {color: red}</style>
<script>trackVisitor()</script></head><body><nav>Home | About | Shop</nav>
<h1>Tea</h1><p>All tea comes from <b>Camellia sinensis</b>.</p>
<h2>Green tea</h2><p>Green tea is steamed or pan-fired soon after picking.</p>
<pre>brew(temperature=80)</pre><footer>Copyright nobody</footer></body></html>"""

RST = """Built-in Functions
==================

The interpreter has a number of :func:`functions <len>` built in.

.. function:: abs(x)

   Return the absolute value of a number, or call :meth:`~object.__abs__`.

Constants
---------

A small number of constants live in the built-in namespace.
"""


def make_pdf(path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in ("Quarterly report. Revenue grew in the north.", "Appendix. Rainfall was low in August."):
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(path))


def make_docx(path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Meeting notes", level=1)
    document.add_paragraph("We agreed to move the launch to May.")
    document.add_heading("Budget", level=2)
    document.add_paragraph("Travel costs stay under the cap.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "owner", "Ada"
    document.save(str(path))


@pytest.fixture
def folder(tmp_path):
    kb = tmp_path / "kb"
    (kb / "sub").mkdir(parents=True)
    (kb / "tea.html").write_text(HTML)
    (kb / "functions.rst").write_text(RST)
    (kb / "sub" / "library.rst.txt").write_text("Library\n=======\n\nThe :mod:`os` module talks to the system.\n")
    make_pdf(kb / "report.PDF")
    make_docx(kb / "notes.docx")
    (kb / "readme.md").write_text("# Readme\n\nPlain Markdown still works.\n")
    (kb / "photo.png").write_bytes(b"\x89PNG\r\n")
    (kb / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    (tmp_path / "outside.txt").write_text("A note kept outside the folder.")
    (kb / "linked.txt").symlink_to(tmp_path / "outside.txt")
    return kb


def documents(run_cli, db, model) -> dict[str, dict]:
    code, out, err = run_cli("list", db, "--json", "--limit", "1000", "-m", model)
    assert code == 0, err
    ids = [json.loads(line)["id"] for line in out.splitlines()]
    code, out, err = run_cli("get", db, *ids, "-m", model)
    return {(r := json.loads(line))["id"]: r for line in out.splitlines()}


def test_each_format_is_read_as_a_reader_sees_it(folder, tmp_path, run_cli, prompt_model_dir):
    db = f"sqlite:///{tmp_path}/kb.db"
    code, _, err = run_cli("add", db, str(folder), "-m", prompt_model_dir, "-q")
    assert code == 6, err  # a partial sync: broken.pdf could not be read, and is named
    assert f"skipped {folder}/broken.pdf: not a readable PDF file" in err
    assert f"unsupported type: {folder}/photo.png" in err
    assert f"followed out of the folder (a symlink): {folder}/linked.txt" in err
    docs = documents(run_cli, db, prompt_model_dir)
    tea = docs[f"{folder}/tea.html"]["text"]
    assert tea.startswith("# Tea\n\nAll tea comes from Camellia sinensis.\n\n## Green tea\n\nGreen tea is steamed")
    assert "```\nbrew(temperature=80)\n```" in tea
    assert not any(word in tea for word in ("trackVisitor", "color", "Home | About", "Copyright"))
    functions = docs[f"{folder}/functions.rst"]["text"]
    assert functions.startswith("# Built-in Functions\n\nThe interpreter has a number of functions built in.")
    assert "abs(x)\n\nReturn the absolute value of a number, or call object.__abs__." in functions
    assert "## Constants" in functions
    assert docs[f"{folder}/sub/library.rst.txt"]["text"] == "# Library\n\nThe os module talks to the system."
    pages = {i: d for i, d in docs.items() if i.startswith(f"{folder}/report.PDF")}
    assert sorted(pages) == [f"{folder}/report.PDF#p1", f"{folder}/report.PDF#p2"]
    assert [pages[i]["metadata"]["page"] for i in sorted(pages)] == [1, 2]
    assert "Revenue grew in the north" in pages[f"{folder}/report.PDF#p1"]["text"]
    assert "Rainfall was low in August" in pages[f"{folder}/report.PDF#p2"]["text"]
    notes = docs[f"{folder}/notes.docx"]["text"]
    budget = "## Budget\n\nTravel costs stay under the cap.\n\nowner | Ada"
    assert notes == "# Meeting notes\n\nWe agreed to move the launch to May.\n\n" + budget
    assert docs[f"{folder}/linked.txt"]["text"] == "A note kept outside the folder."
    assert f"{folder}/photo.png" not in docs and f"{folder}/broken.pdf" not in docs


def test_paragraphs_carry_their_headings_in_every_format(folder, tmp_path, run_cli, prompt_model_dir):
    db = f"sqlite:///{tmp_path}/kb.db"
    run_cli("add", db, str(folder), "--unit", "paragraph", "-m", prompt_model_dir, "-q")
    docs = documents(run_cli, db, prompt_model_dir).values()
    under = {d["text"]: d["metadata"].get("headings") for d in docs}
    assert under["Green tea is steamed or pan-fired soon after picking."] == ["Tea", "Green tea"]
    assert under["A small number of constants live in the built-in namespace."] == ["Built-in Functions", "Constants"]
    assert under["Travel costs stay under the cap."] == ["Meeting notes", "Budget"]
    pdf = [d for d in docs if "Rainfall" in d["text"]]
    assert len(pdf) == 1 and pdf[0]["metadata"]["page"] == 2


def test_a_missing_library_names_the_extra(folder, tmp_path, run_cli, prompt_model_dir, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pypdf", None)  # as if the documents extra were not installed
    code, _, err = run_cli("add", f"sqlite:///{tmp_path}/kb.db", str(folder / "report.PDF"), "-m", prompt_model_dir)
    assert code == 1 and "reading .pdf files needs the 'pypdf' package" in err
    assert "pip install 'embedkit-search[documents]'" in err
