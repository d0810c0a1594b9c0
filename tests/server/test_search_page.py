"""The search page at ``/`` in a real browser: Debian's chromium, headless, driven through Playwright's
Python API (its own browser download cannot work here). The hits shown are checked against
``index.search``."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from serving import KEY, running

from integrations import open_index

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = [
    ("tea-1", "Green tea is steamed soon after picking, which keeps it green.", {"topic": "tea", "year": 2020}),
    ("tea-2", "Black tea leaves are rolled and fully oxidised before drying.", {"topic": "tea", "year": 2022}),
    ("cof-1", "Espresso is brewed by forcing hot water through fine coffee.", {"topic": "coffee", "year": 2021}),
    ("riv-1", "The Danube flows through ten countries into the Black Sea.", {"topic": "rivers", "year": 2019}),
    ("cof-2", "Coffee beans are the roasted seeds of a cherry.", {"topic": "coffee", "year": 2023}),
]


@pytest.fixture
def browser():
    sync = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    with sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.mark.slow
def test_the_page_searches_as_the_index_does(browser, make_service, tiny_model, tmp_path):
    index = open_index(f"sqlite:///{tmp_path}/kb.db", tiny_model)
    index.add([t for _, t, _ in DOCS], [m for *_, m in DOCS], ids=[i for i, *_ in DOCS])
    with running(make_service(indexes={"kb": index})) as url:
        page = browser.new_page()
        page.goto(url + "/")
        page.fill("#key", KEY)
        page.dispatch_event("#key", "change")
        page.wait_for_selector("#index option[value=kb]", state="attached")
        assert "5 documents" in page.inner_text("#index")

        def search(query: str, mode: str, filter: dict | None = None) -> list[str]:
            page.fill("#query", query)
            page.check(f"input[name=mode][value={mode}]")
            page.fill("#filter", json.dumps(filter) if filter else "")
            page.fill("#k", "3")
            page.click("button[type=submit]")
            page.wait_for_function("document.querySelector('#summary').textContent.includes('" + mode + "')")
            return page.eval_on_selector_all("#hits li", "items => items.map(i => i.dataset.id)")

        for mode, filter in (
            ("vector", None),
            ("keyword", None),
            ("hybrid", {"topic": "coffee"}),
            ("vector", {"year": {"$gte": 2021}}),
        ):
            shown = search("how is tea or coffee made", mode, filter)
            want = [h.id for h in index.search("how is tea or coffee made", k=3, mode=mode, filter=filter)]
            assert shown == want and shown, (mode, filter)
            page.wait_for_function(
                "document.querySelector('#summary').textContent.startsWith('" + f"Results 1–{len(want)} " + "')"
            )

        shown = search("roasted seeds", "keyword", {"topic": "coffee"})
        assert shown == ["cof-2"]
        assert page.inner_text("#hits li .snippet") == DOCS[4][1]  # the passage: here the whole document
        assert page.locator("#hits li .snippet mark").all_inner_texts() == ["roasted", "seeds"]
        assert '"topic":"coffee"' in page.inner_text("#hits li .meta")

        page.fill("#filter", '{"year": {"$gt": [1]}}')
        page.click("button[type=submit]")
        page.wait_for_function("document.querySelector('#error').textContent.includes('filter')")
        assert page.eval_on_selector_all("#hits li", "items => items.length") == 0


def guide(n: int) -> str:
    """A long Markdown guide (about 12,000 characters): sections of filler, "brewing" in each, and in guide 2
    the word "zebrafish" deep in its second section."""
    filler = " ".join(f"w{n}x{i}" for i in range(700))
    rare = "the zebrafish brewing trick" if n == 2 else "brewing"
    return f"# Guide {n}\n\n{filler}\n\n## Kettles\n\n{filler} {rare} {filler}\n\n## Cups\n\n{filler} brewing\n"


def png_height(png: bytes) -> int:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(png[20:24], "big")  # the IHDR chunk's height


@pytest.mark.slow
def test_the_page_shows_passages_and_keeps_the_search_in_its_url(browser, make_service, tiny_model, tmp_path):
    index = open_index(f"sqlite:///{tmp_path}/kb.db", tiny_model, chunk_tokens=64, chunk_overlap=8)
    metadatas = [
        {"source": f"/kb/guide-{n}.md", "topic": "tea" if n % 2 else "coffee", "year": 2020 + n} for n in range(8)
    ]
    index.add([guide(n) for n in range(8)], metadatas, ids=[f"g{n}" for n in range(8)])
    with running(make_service(indexes={"kb": index})) as url:
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(url + "/")
        page.fill("#key", KEY)
        page.dispatch_event("#key", "change")  # the key is kept for the tab; the URL holds the search
        page.wait_for_selector("#index option[value=kb]", state="attached")
        page.goto(url + "/?index=kb&q=zebrafish+brewing&mode=keyword&k=3")
        page.wait_for_function("document.querySelectorAll('#hits li').length === 3")
        want = index.search("zebrafish brewing", k=6, mode="keyword")
        assert page.eval_on_selector_all("#hits li", "items => items.map(i => i.dataset.id)") == [
            h.id for h in want[:3]
        ]
        assert page.input_value("#query") == "zebrafish brewing" and page.is_checked("input[value=keyword]")

        first = page.locator("#hits li").first  # guide 2: its passage, the words marked, where it stands
        assert first.get_attribute("data-id") == "g2"
        assert first.locator(".snippet mark").all_inner_texts() == ["zebrafish", "brewing"]
        assert first.locator(".where").inner_text() == "/kb/guide-2.md › Guide 2 › Kettles"
        assert "keyword score" in first.locator(".score").inner_text()
        assert len(first.locator(".snippet").inner_text()) < 1000 < len(guide(2)) // 10
        assert "topic" in page.inner_text("#fields") and "year" in page.inner_text("#fields")

        height = png_height(page.screenshot(full_page=True))
        assert height < 2200, height  # three whole 12,000-character guides would be well over 10,000 pixels

        first.locator("button.expand").click()
        page.wait_for_selector("#hits li .document .passage mark")
        box = page.eval_on_selector(
            "#hits li .document .passage mark",
            "m => { const r = m.getBoundingClientRect(), d = m.closest('.document').getBoundingClientRect();"
            " return [r.top, r.bottom, d.top, d.bottom, window.innerHeight]; }",
        )
        top, bottom, box_top, box_bottom, viewport = box
        assert box_top <= top and bottom <= box_bottom and 0 <= top and bottom <= viewport, box  # on screen
        assert page.eval_on_selector("#hits li .document", "d => d.textContent") == guide(2)

        page.click("#next")
        page.wait_for_function("document.querySelector('#summary').textContent.startsWith('Results 4')")
        shown = page.eval_on_selector_all("#hits li", "items => items.map(i => i.dataset.id)")
        assert shown == [h.id for h in want[3:6]] and "page=2" in page.url
        assert page.eval_on_selector("#hits", "ol => ol.start") == 4

        page.check("input[name=mode][value=hybrid]")
        page.click("button[type=submit]")
        page.wait_for_function("document.querySelector('#summary').textContent.includes('hybrid')")
        hybrid = index.search("zebrafish brewing", k=3, mode="hybrid")
        scores = page.locator("#hits li .score").all_inner_texts()
        for hit, text in zip(hybrid, scores):
            assert text.startswith(f"fused score {hit.score:.4f}")
            assert all(f"#{rank} in {leg}" in text for leg, rank in hit.ranks.items()), (text, hit.ranks)
