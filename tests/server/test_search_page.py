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
                "document.querySelector('#summary').textContent.startsWith('" + f"{len(want)} results" + "')"
            )

        shown = search("roasted seeds", "keyword", {"topic": "coffee"})
        assert shown == ["cof-2"]
        assert page.inner_text("#hits li mark") == DOCS[4][1]  # the passage, highlighted in its document
        assert '"topic":"coffee"' in page.inner_text("#hits li .meta")

        page.fill("#filter", '{"year": {"$gt": [1]}}')
        page.click("button[type=submit]")
        page.wait_for_function("document.querySelector('#error').textContent.includes('filter')")
        assert page.eval_on_selector_all("#hits li", "items => items.length") == 0
