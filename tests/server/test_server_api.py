"""The server's endpoints, called on loopback by the official ``openai`` client and by httpx, against the
model, the CrossEncoder oracle and the index's own answers."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from openai import OpenAI
from serving import KEY, running
from store_workers import HashEncoder

from integrations import open_index

TEXTS = ["Green tea is steamed soon after picking.", "Espresso is brewed under pressure.", "Rivers reach the sea."]


@pytest.fixture
def served(make_service):
    with running(make_service()) as url:
        yield url


def test_the_openai_client_gets_the_model_s_embeddings(served, tiny_model):
    client = OpenAI(base_url=served + "/v1", api_key=KEY)

    def vectors(answer, fmt):  # asked for explicitly, base64 comes back as the text the server sent
        rows = [d.embedding for d in answer.data]
        return [np.frombuffer(base64.b64decode(r), dtype="<f4") for r in rows] if fmt == "base64" else rows

    for fmt in ("float", "base64"):
        one = client.embeddings.create(input=TEXTS[0], model="tiny", encoding_format=fmt)
        np.testing.assert_allclose(vectors(one, fmt)[0], tiny_model.encode(TEXTS[0]), atol=1e-6)
        many = client.embeddings.create(input=TEXTS, model="tiny", encoding_format=fmt)
        assert [d.index for d in many.data] == [0, 1, 2]
        np.testing.assert_allclose(vectors(many, fmt), tiny_model.encode(TEXTS), atol=1e-6)
    short = client.embeddings.create(input=TEXTS, model="tiny", dimensions=8)
    np.testing.assert_allclose([d.embedding for d in short.data], tiny_model.encode(TEXTS, truncate_dim=8), atol=1e-6)
    default = client.embeddings.create(input=TEXTS, model="tiny")  # the client asks for base64 and decodes it
    np.testing.assert_allclose([d.embedding for d in default.data], tiny_model.encode(TEXTS), atol=1e-6)
    tokens = sum(len(ids) for ids in tiny_model.tokenizer(TEXTS)["input_ids"])
    assert many.usage.prompt_tokens == many.usage.total_tokens == tokens
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_input_type_and_prompt_name_pick_the_prompt(served, tiny_model, client):
    for body, want in (
        ({"input_type": "query"}, tiny_model.encode_query(TEXTS)),
        ({"input_type": "document"}, tiny_model.encode_document(TEXTS)),
        ({"prompt_name": "passage"}, tiny_model.encode(TEXTS, prompt_name="passage")),
    ):
        answer = client.post(served + "/v1/embeddings", json={"input": TEXTS, "model": "tiny", **body}).json()
        np.testing.assert_allclose([d["embedding"] for d in answer["data"]], want, atol=1e-6)
    with_prompt = sum(len(i) for i in tiny_model.tokenizer(["query: " + t for t in TEXTS])["input_ids"])
    answer = client.post(served + "/v1/embeddings", json={"input": TEXTS, "input_type": "query"}).json()
    assert answer["usage"]["prompt_tokens"] == with_prompt
    raw = client.post(served + "/v1/embeddings", json={"input": TEXTS, "encoding_format": "base64"}).json()
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw["data"]]
    np.testing.assert_allclose(decoded, tiny_model.encode(TEXTS), atol=1e-6)


def test_text_embeddings_inference_shapes(served, tiny_model, client):
    rows = client.post(served + "/embed", json={"inputs": TEXTS}).json()
    np.testing.assert_allclose(rows, tiny_model.encode(TEXTS, normalize_embeddings=True), atol=1e-6)
    raw = client.post(served + "/embed", json={"inputs": TEXTS[0], "normalize": False, "prompt_name": "query"}).json()
    np.testing.assert_allclose(raw, [tiny_model.encode(TEXTS[0], prompt_name="query")], atol=1e-6)


def test_rerank_in_cohere_and_tei_shapes(make_service, cross_dirs, client):
    from sentence_transformers import CrossEncoder as Oracle

    from embedkit import CrossEncoder

    want = Oracle(cross_dirs[1], device="cpu").rank("steamed tea", TEXTS)
    with running(make_service(reranker=CrossEncoder(cross_dirs[1], device="cpu"))) as url:
        body = {"query": "steamed tea", "documents": [TEXTS[0], {"text": TEXTS[1]}, TEXTS[2]], "top_n": 2}
        cohere = client.post(
            url + "/v1/rerank", json={**body, "return_documents": True, "model": "tiny-reranker"}
        ).json()
        assert [r["index"] for r in cohere["results"]] == [w["corpus_id"] for w in want[:2]]
        np.testing.assert_allclose(
            [r["relevance_score"] for r in cohere["results"]], [w["score"] for w in want[:2]], atol=1e-5
        )
        assert cohere["results"][0]["document"]["text"] == TEXTS[want[0]["corpus_id"]]
        tei = client.post(url + "/rerank", json={"query": "steamed tea", "texts": TEXTS, "return_text": True}).json()
        assert [r["index"] for r in tei] == [w["corpus_id"] for w in want] and "text" in tei[0]
        models = client.get(url + "/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["tiny", "tiny-reranker"]


@pytest.mark.slow
def test_index_endpoints_answer_as_the_index_does(make_service, tmp_path, client, cross_dirs):
    from embedkit import CrossEncoder

    index = open_index(f"sqlite:///{tmp_path}/docs.db", HashEncoder())
    service = make_service(indexes={"docs": index}, reranker=CrossEncoder(cross_dirs[1], device="cpu"))
    with running(service) as url:
        docs = [
            {"id": f"d{i}", "text": t, "metadata": {"i": i, "kind": "even" if i % 2 == 0 else "odd"}}
            for i, t in enumerate(TEXTS * 3)
        ]
        assert client.post(url + "/v1/indexes/docs/add", json={"documents": docs}).json() == {
            "ids": [d["id"] for d in docs]
        }
        info = client.get(url + "/v1/indexes/docs").json()
        assert info["count"] == 9 and info["dimension"] == 32 and info["model"] == "hash-encoder"
        assert [i["name"] for i in client.get(url + "/v1/indexes").json()["data"]] == ["docs"]
        for mode in ("vector", "keyword", "hybrid"):
            for rerank in (False, True):
                body = {"query": "tea sea", "k": 4, "mode": mode, "filter": {"kind": "even"}, "rerank": rerank}
                hits = client.post(url + "/v1/indexes/docs/search", json=body).json()["data"]
                want = index.search(
                    "tea sea", k=4, mode=mode, filter={"kind": "even"}, rerank=service.reranker if rerank else None
                )
                assert [h["id"] for h in hits] == [h.id for h in want]
                np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in want], atol=1e-6)
                assert all(h["metadata"]["kind"] == "even" for h in hits)
        got = client.post(url + "/v1/indexes/docs/get", json={"ids": ["d1", "d0"]}).json()["data"]
        assert [g["id"] for g in got] == ["d1", "d0"] and got[0]["text"] == TEXTS[1]
        assert client.post(url + "/v1/indexes/docs/delete", json={"filter": {"kind": "odd"}}).json() == {"deleted": 4}
        assert client.post(url + "/v1/indexes/docs/delete", json={"ids": ["d0"]}).json() == {"deleted": 1}
        assert len(index) == 4
        made = client.post(url + "/v1/indexes/docs/add", json={"documents": [{"text": "no id"}]}).json()["ids"]
        assert index.get(made)[0].text == "no id"


@pytest.mark.slow
def test_every_protected_endpoint_wants_the_key(served):
    protected = [
        ("GET", "/v1/models", None),
        ("GET", "/metrics", None),
        ("POST", "/v1/embeddings", {"input": "x"}),
        ("POST", "/embed", {"inputs": "x"}),
        ("POST", "/v1/rerank", {"query": "q", "documents": ["x"]}),
        ("POST", "/rerank", {"query": "q", "texts": ["x"]}),
        ("GET", "/v1/indexes", None),
        ("GET", "/v1/indexes/docs", None),
        ("POST", "/v1/indexes/docs/search", {"query": "q"}),
        ("POST", "/v1/indexes/docs/add", {"documents": [{"text": "x"}]}),
        ("POST", "/v1/indexes/docs/get", {}),
        ("POST", "/v1/indexes/docs/delete", {"ids": ["x"]}),
    ]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        for method, path, body in protected:
            answer = httpx.request(method, served + path, json=body, headers=headers)
            assert answer.status_code == 401, (path, headers)
            assert answer.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(served + "/health").json() == {"status": "ok"}
    assert "<form" in httpx.get(served + "/").text  # the page holds no data; its calls send the key


BAD = [
    ("/v1/embeddings", b"{not json", "not valid JSON"),
    ("/v1/embeddings", b"[1, 2]", "valid dictionary"),
    ("/v1/embeddings", {}, "input: Field required"),
    ("/v1/embeddings", {"input": []}, "input must not be empty"),
    ("/v1/embeddings", {"input": ""}, "input[0] is empty"),
    ("/v1/embeddings", {"input": ["a", "  "]}, "input[1] is empty"),
    ("/v1/embeddings", {"input": [1, 2, 3]}, "token arrays are not supported"),
    ("/v1/embeddings", {"input": [[1, 2]]}, "token arrays are not supported"),
    ("/v1/embeddings", {"input": None}, "input"),
    ("/v1/embeddings", {"input": {"a": 1}}, "input"),
    ("/v1/embeddings", {"input": "x", "model": "gpt-4"}, "is not served here"),
    ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ("/v1/embeddings", {"input": "x", "dimensions": 0}, "dimensions"),
    ("/v1/embeddings", {"input": "x", "dimensions": 4096}, "exceeds the model's 32"),
    ("/v1/embeddings", {"input": "x", "dimensions": "8"}, "dimensions"),
    ("/v1/embeddings", {"input": "x", "input_type": "search"}, "input_type"),
    ("/v1/embeddings", {"input": "x", "prompt_name": "nope"}, "unknown prompt_name 'nope'"),
    ("/v1/embeddings", {"input": "x", "temperature": 1}, "temperature: Extra inputs are not permitted"),
    ("/v1/embeddings", {"input": "word " * 400}, "the model takes at most 128"),
    ("/embed", {"inputs": []}, "inputs must not be empty"),
    ("/embed", {"inputs": "x", "normalize": "yes"}, "normalize"),
    ("/v1/rerank", {"query": "q", "documents": ["a"]}, "no reranker is served here"),
    ("/v1/rerank", {"documents": ["a"]}, "query: Field required"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
    ("/rerank", {"query": "q", "texts": []}, "texts must not be empty"),
    ("/v1/indexes/nope/search", {"query": "q"}, "no index 'nope'"),
    ("/v1/indexes/docs/search", {"query": "q", "k": 0}, "k:"),
    ("/v1/indexes/docs/search", {"query": "q", "k": "many"}, "k:"),
    ("/v1/indexes/docs/search", {"query": "q", "mode": "fuzzy"}, "mode"),
    ("/v1/indexes/docs/search", {"query": "q", "filter": {"$where": 1}}, "filter: "),
    ("/v1/indexes/docs/search", {"query": "q", "filter": {"a": {"$gt": [1]}}}, "filter: "),
    ("/v1/indexes/docs/search", {"query": "q", "rerank": True}, "rerank needs a reranker"),
    ("/v1/indexes/docs/add", {"documents": []}, "documents"),
    ("/v1/indexes/docs/add", {"documents": [{"id": "a", "text": "x"}, {"text": "y"}]}, "give every document an id"),
    ("/v1/indexes/docs/add", {"documents": [{"id": "a\x1fb", "text": "x"}]}, "id"),
    ("/v1/indexes/docs/add", b'{"documents": [{"text": "x", "metadata": {"n": Infinity}}]}', "not JSON-serializable"),
    ("/v1/indexes/docs/get", {"limit": -1}, "limit"),
    ("/v1/indexes/docs/delete", {}, "delete needs ids, a filter or both"),
    ("/v1/nothing", {}, "Not Found"),
]


def test_bad_requests_get_a_clear_4xx(make_service, tmp_path, client):
    service = make_service(indexes={"docs": open_index(f"sqlite:///{tmp_path}/docs.db", HashEncoder())})
    with running(service) as url:
        for path, body, message in BAD:
            if isinstance(body, bytes):
                answer = client.post(url + path, content=body, headers={"Content-Type": "application/json"})
            else:
                answer = client.post(url + path, json=body)
            assert 400 <= answer.status_code < 500, (path, body, answer.status_code, answer.text)
            error = answer.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and message in error["message"], (body, error)
            assert "Traceback" not in answer.text
        assert len(BAD) >= 30
        assert client.get(url + "/health").status_code == 200


def test_bodies_and_input_counts_are_bounded(make_service, client):
    with running(make_service(max_body_bytes=10_000, max_inputs=8)) as url:
        big = client.post(url + "/v1/embeddings", json={"input": ["x" * 20_000]})
        assert big.status_code == 413 and "over 10000 bytes" in big.json()["error"]["message"]
        many = client.post(url + "/v1/embeddings", json={"input": ["x"] * 9})
        assert many.status_code == 413 and "at most 8 per request" in many.json()["error"]["message"]

        def chunks():
            yield b'{"input": ["'
            for _ in range(20):
                yield b"x" * 1000
            yield b'"]}'

        streamed = client.post(url + "/v1/embeddings", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413


def test_embed_sparse_and_sparse_search_answer_as_the_model_does(tmp_path, tiny_model, splade_tiny, client):
    """TEI's ``/embed_sparse`` gives the SPLADE model's own sparse vectors as (index, value) lists, refuses an
    over-long input unless asked to cut it, and answers 404 on a server without a sparse model; a served
    index with a sparse leg searches in sparse and three-leg hybrid mode as in Python."""
    from embedkit import SparseEncoder
    from integrations.server import Limits, Service

    splade = SparseEncoder(splade_tiny)
    index = open_index(f"sqlite:///{tmp_path}/docs.db", HashEncoder(), sparse_encoder=splade)
    index.add(TEXTS, ids=["tea", "coffee", "river"])
    service = Service(tiny_model, "tiny", None, None, {"docs": index}, Limits(), sparse_model=splade)
    with running(service) as url:
        rows = client.post(url + "/embed_sparse", json={"inputs": TEXTS}).json()
        expected = splade.encode(TEXTS).to_dense()
        for row, want in zip(rows, expected):
            active = want.nonzero().flatten().tolist()
            assert [entry["index"] for entry in row] == active
            assert [entry["value"] for entry in row] == pytest.approx(want[active].tolist(), rel=1e-4, abs=1e-5)
        long = " ".join(["tea"] * 600)
        refused = client.post(url + "/embed_sparse", json={"inputs": [long]})
        assert refused.status_code == 400 and "inputs[0] is" in refused.text and "truncate" in refused.text
        assert client.post(url + "/embed_sparse", json={"inputs": long, "truncate": True}).status_code == 200
        assert "sparse" in client.get(url + "/v1/indexes/docs").json()["modes"]
        for body in ({"mode": "sparse"}, {"mode": "hybrid", "weights": {"sparse": 1.0, "keyword": 0.5}}):
            hits = client.post(url + "/v1/indexes/docs/search", json={"query": "green tea", "k": 2, **body}).json()
            want = index.search("green tea", k=2, **body)
            assert [h["id"] for h in hits["data"]] == [h.id for h in want]
            assert [h["score"] for h in hits["data"]] == pytest.approx([h.score for h in want])
        bad = client.post(url + "/v1/indexes/docs/search", json={"query": "tea", "mode": "hybrid", "weights": {"x": 1}})
        assert bad.status_code == 400
    with running(Service(tiny_model, "tiny")) as url:
        missing = client.post(url + "/embed_sparse", json={"inputs": "tea"})
        assert missing.status_code == 404 and "--sparse-model" in missing.text
