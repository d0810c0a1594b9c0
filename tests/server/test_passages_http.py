"""Passages first over HTTP: a search hit carries its passage, the query's words in it, its heading path and
source, and its whole document only with ``include_text``; ``/fields`` lists the fields a filter can name."""

from __future__ import annotations

from serving import running

from integrations import open_index

FILLER = " ".join(f"filler{i}" for i in range(200))
GUIDE = f"# Guide\n\n{FILLER}\n\n## Kettles\n\n{FILLER} the zebrafish kettle trick\n\n## Cups\n\n{FILLER}\n"


def test_a_hit_carries_its_passage_and_the_whole_text_only_when_asked(make_service, tiny_model, tmp_path, client):
    index = open_index(f"sqlite:///{tmp_path}/kb.db", tiny_model, chunk_tokens=32, chunk_overlap=4)
    index.add(
        [GUIDE, "Kettles boil water.", "A cup of tea."],
        [{"source": "/kb/guide.md", "year": 2020}, {"source": "/kb/notes.txt", "year": 2021.5}, {"tags": ["a"]}],
        ids=["guide", "notes", "cup"],
    )
    with running(make_service(indexes={"kb": index})) as url:
        body = {"query": "zebrafish kettles", "k": 2, "mode": "keyword"}
        hits = client.post(url + "/v1/indexes/kb/search", json=body).json()["data"]
        guide = next(h for h in hits if h["id"] == "guide")
        start, end = guide["span"]
        assert "text" not in guide and guide["passage"] == GUIDE[start:end] and end - start < len(GUIDE) // 5
        assert [guide["passage"][a:b] for a, b in guide["highlights"]] == ["zebrafish", "kettle"]
        assert guide["headings"] == ["Guide", "Kettles"] and guide["source"] == "/kb/guide.md"
        notes = next(h for h in hits if h["id"] == "notes")
        assert notes["passage"] == "Kettles boil water." and notes["headings"] == [] and notes["span"] is None
        full = client.post(url + "/v1/indexes/kb/search", json=body | {"include_text": True}).json()["data"]
        assert [h["text"] for h in full] == [index.get([h["id"]])[0].text for h in full]
        assert [{k: v for k, v in h.items() if k != "text"} for h in full] == hits

        fields = client.get(url + "/v1/indexes/kb/fields").json()
        assert fields["sampled"] == 3
        assert fields["data"] == [
            {"name": "source", "documents": 2, "types": ["string"], "examples": ["/kb/guide.md", "/kb/notes.txt"]},
            {"name": "year", "documents": 2, "types": ["number"], "examples": [2020, 2021.5]},
            {"name": "tags", "documents": 1, "types": ["array"], "examples": []},
        ]
        answer = client.post(url + "/v1/indexes/kb/search", json=body | {"include_text": "yes"})
        assert answer.status_code == 400 and "include_text" in answer.json()["error"]["message"]
