"""SparseEncoder against sentence-transformers' own (the oracle): a tiny random masked-LM built here and, where
it can be had, the trained SPLADE-tiny; the same active dimensions and weights, decode, sparsity and
similarity, folders saved by each loaded by the other, and clear errors for bad input."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TEXTS, TINY_BERT

from embedkit import SentenceTransformer, SparseEncoder

QUERIES = ["what do foxes jump over", "guitar", "capital of France"]


@pytest.fixture(scope="session", params=["tiny", "splade-tiny"])
def pair(request, mlm_dir):
    """(embedkit's SparseEncoder, the oracle's) over the same folder."""
    from sentence_transformers import SparseEncoder as Oracle

    path = mlm_dir if request.param == "tiny" else request.getfixturevalue("splade_tiny")
    return SparseEncoder(path, device="cpu"), Oracle(path, device="cpu")


def assert_same(mine: torch.Tensor, theirs: torch.Tensor, atol: float = 1e-4) -> None:
    """The same active dimensions, and weights within ``atol``."""
    assert mine.is_sparse and mine.shape == theirs.shape
    mine, theirs = mine.to_dense(), theirs.to_dense()
    assert torch.equal(mine != 0, theirs != 0)
    assert torch.allclose(mine, theirs, atol=atol, rtol=0)


@pytest.mark.slow
def test_documents_and_queries_equal_the_oracle(pair):
    mine, oracle = pair
    assert_same(mine.encode_document(TEXTS), oracle.encode_document(TEXTS))
    assert_same(mine.encode_query(QUERIES), oracle.encode_query(QUERIES))
    assert_same(mine.encode(TEXTS, batch_size=3), oracle.encode(TEXTS, batch_size=3))
    one = mine.encode(TEXTS[2])
    assert one.dim() == 1 and one.is_sparse
    assert_same(one[None], oracle.encode(TEXTS[2])[None])


@pytest.mark.slow
def test_decode_sparsity_and_similarity_equal_the_oracle(pair):
    mine, oracle = pair
    docs, queries = mine.encode(TEXTS), mine.encode_query(QUERIES)
    theirs_docs, theirs_queries = oracle.encode(TEXTS), oracle.encode_query(QUERIES)
    for a, b in zip(mine.decode(docs, top_k=8), oracle.decode(theirs_docs, top_k=8)):
        assert [t for t, _ in a] == [t for t, _ in b]
        assert [w for _, w in a] == pytest.approx([w for _, w in b], abs=1e-4)
    whole, theirs_whole = mine.decode(queries[0]), oracle.decode(theirs_queries[0])  # every active token
    assert dict(whole) == pytest.approx(dict(theirs_whole), abs=1e-4) and len(whole) == len(theirs_whole)
    assert [w for _, w in whole] == sorted((w for _, w in whole), reverse=True)
    assert mine.sparsity(docs) == pytest.approx(oracle.sparsity(theirs_docs))
    assert mine.similarity_fn_name == oracle.similarity_fn_name == "dot"
    assert torch.allclose(mine.similarity(queries, docs), oracle.similarity(theirs_queries, theirs_docs), atol=1e-3)
    first, second = torch.arange(3), torch.arange(3, 6)  # (a sparse tensor takes no slices)
    pairs = mine.similarity_pairwise(docs.index_select(0, first), docs.index_select(0, second))
    theirs = oracle.similarity_pairwise(theirs_docs.index_select(0, first), theirs_docs.index_select(0, second))
    assert torch.allclose(pairs, theirs, atol=1e-3)
    mine.similarity_fn_name = oracle.similarity_fn_name = "cosine"
    try:
        assert torch.allclose(mine.similarity(queries, docs), oracle.similarity(theirs_queries, theirs_docs), atol=1e-5)
    finally:
        mine.similarity_fn_name = oracle.similarity_fn_name = "dot"
    shared = mine.intersection(queries[0], docs)
    assert torch.allclose(shared.to_dense(), oracle.intersection(theirs_queries[0], theirs_docs).to_dense(), atol=1e-4)


@pytest.mark.slow
def test_dot_products_are_the_hand_computed_ones(pair):
    mine, _ = pair
    docs, query = mine.encode(TEXTS).to_dense(), mine.encode_query(QUERIES[0]).to_dense()
    expected = [sum(float(q) * float(d) for q, d in zip(query, row) if q and d) for row in docs]
    assert mine.similarity(query, docs)[0].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_max_active_dims_keeps_the_largest_weights_as_the_oracle_does(pair, tmp_path):
    from sentence_transformers import SparseEncoder as Oracle

    mine, oracle = pair
    cut = mine.encode(TEXTS, max_active_dims=4)
    assert_same(cut, oracle.encode(TEXTS, max_active_dims=4))
    full = mine.encode(TEXTS).to_dense()
    for row, whole in zip(cut.to_dense(), full):
        assert int((row != 0).sum()) == min(4, int((whole != 0).sum()))
        assert torch.equal(row[row != 0], whole[row != 0])
        assert float(row.sum()) == pytest.approx(float(whole.topk(4).values.clamp_min(0).sum()), rel=1e-6)
    mine.max_active_dims = 4
    try:
        mine.save(str(tmp_path / "cut"))
    finally:
        mine.max_active_dims = None
    reloaded, theirs = SparseEncoder(str(tmp_path / "cut"), device="cpu"), Oracle(str(tmp_path / "cut"), device="cpu")
    assert reloaded.max_active_dims == theirs.max_active_dims == 4
    assert_same(reloaded.encode(TEXTS), theirs.encode(TEXTS))


@pytest.mark.slow
def test_folders_saved_by_each_load_in_the_other_with_identical_outputs(pair, tmp_path):
    from sentence_transformers import SparseEncoder as Oracle

    mine, oracle = pair
    expected = oracle.encode(TEXTS)
    mine.save(str(tmp_path / "ours"))
    oracle.save(str(tmp_path / "theirs"))
    assert_same(Oracle(str(tmp_path / "ours"), device="cpu").encode(TEXTS), expected, atol=1e-6)
    assert_same(SparseEncoder(str(tmp_path / "theirs"), device="cpu").encode(TEXTS), expected)
    again = SparseEncoder(str(tmp_path / "ours"), device="cpu")
    assert again.similarity_fn_name == "dot" and again.prompts == {"query": "", "document": ""}
    assert_same(again.encode(TEXTS), mine.encode(TEXTS), atol=0)


def test_a_folder_in_sentence_transformers_5_layout_loads(pair, tmp_path):
    """sentence-transformers 5 named the first module ``MLMTransformer`` and wrote no task into its config."""
    mine, oracle = pair
    oracle.save(str(tmp_path))
    modules = json.loads((tmp_path / "modules.json").read_text())
    modules[0]["type"] = "sentence_transformers.sparse_encoder.models.MLMTransformer"
    modules[1]["type"] = "sentence_transformers.sparse_encoder.models.SpladePooling"
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    config = {"max_seq_length": mine.max_seq_length, "do_lower_case": False}
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps(config))
    assert_same(SparseEncoder(str(tmp_path), device="cpu").encode(TEXTS), oracle.encode(TEXTS))


@pytest.mark.slow
def test_prompts_reach_queries_and_documents(mlm_dir):
    from sentence_transformers import SparseEncoder as Oracle

    prompts = {"query": "query: ", "document": "passage: "}
    mine = SparseEncoder(mlm_dir, device="cpu", prompts=prompts)
    oracle = Oracle(mlm_dir, device="cpu", prompts=prompts)
    assert_same(mine.encode_query(QUERIES), oracle.encode_query(QUERIES))
    assert_same(mine.encode_document(TEXTS), oracle.encode_document(TEXTS))
    assert not torch.equal(mine.encode_query(QUERIES).to_dense(), mine.encode(QUERIES).to_dense())


def test_output_forms(mlm_dir):
    model = SparseEncoder(mlm_dir, device="cpu")
    width = model.get_sentence_embedding_dimension()
    assert width == TINY_BERT["vocab_size"]
    dense = model.encode(TEXTS, convert_to_sparse_tensor=False)
    assert not dense.is_sparse and dense.shape == (len(TEXTS), width)
    rows = model.encode(TEXTS, convert_to_tensor=False)
    assert isinstance(rows, list) and len(rows) == len(TEXTS)
    assert all(torch.equal(r.to_dense(), d) for r, d in zip(rows, dense))
    empty = model.encode([])
    assert empty.is_sparse and empty.shape == (0, width)
    assert model.sparsity(empty) == {"active_dims": 0.0, "sparsity_ratio": 1.0}
    assert model.decode(model.encode(TEXTS[:2]), top_k=3)[1] == model.decode(model.encode(TEXTS[1]), top_k=3)


@pytest.mark.slow
def test_a_pool_of_processes_gives_the_same_vectors(mlm_dir):
    model = SparseEncoder(mlm_dir, device="cpu")
    texts = TEXTS * 5
    with model.start_multi_process_pool(["cpu", "cpu"]) as pool:
        pooled = model.encode(texts, pool=pool, chunk_size=7)
    assert_same(pooled, model.encode(texts), atol=1e-5)
    assert_same(model.encode(texts, device=["cpu", "cpu"]), model.encode(texts), atol=1e-5)


def test_bad_input_is_refused_with_a_clear_message(mlm_dir, bert_dir):
    model = SparseEncoder(mlm_dir, device="cpu")
    with pytest.raises(TypeError, match="expects a str or a list of str, got NoneType"):
        model.encode(None)
    with pytest.raises(TypeError, match="input at index 1 is int"):
        model.encode(["a", 3])
    with pytest.raises(ValueError, match="max_active_dims must be a positive int, got 0"):
        model.encode(["a"], max_active_dims=0)
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        model.decode(model.encode("a"), top_k=0)
    with pytest.raises(TypeError, match="decode\\(\\) expects a torch.Tensor, got list"):
        model.decode([1.0, 2.0])
    with pytest.raises(ValueError, match="unknown keyword arguments: \\['normalize_embeddings'\\]"):
        model.encode(["a"], normalize_embeddings=True)
    with pytest.raises(ValueError, match="is not a masked-LM model"):
        SparseEncoder(bert_dir, device="cpu")  # a plain BertModel: nothing to pool into the vocabulary
    with pytest.raises(ValueError, match="onnx backend runs feature-extraction models only"):
        SparseEncoder(mlm_dir, device="cpu", backend="onnx")


def test_a_sentence_transformer_still_mean_pools_a_masked_lm_folder(mlm_dir):
    from sentence_transformers import SentenceTransformer as Oracle

    mine, oracle = SentenceTransformer(mlm_dir, device="cpu"), Oracle(mlm_dir, device="cpu")
    assert mine.get_sentence_embedding_dimension() == TINY_BERT["hidden_size"]
    assert torch.allclose(torch.from_numpy(mine.encode(TEXTS)), torch.from_numpy(oracle.encode(TEXTS)), atol=1e-5)


@pytest.mark.slow
def test_inference_free_splade_equals_the_oracle_and_saves_both_ways(inference_free_splade, tmp_path):
    """A Router folder: queries weighed by token without the model, documents by SPLADE, as theirs."""
    from sentence_transformers import SparseEncoder as Oracle

    mine, oracle = SparseEncoder(inference_free_splade, device="cpu"), Oracle(inference_free_splade, device="cpu")
    query, document = mine.encode_query(QUERIES), mine.encode_document(TEXTS)
    assert_same(query, oracle.encode_query(QUERIES), atol=1e-6)
    assert_same(document, oracle.encode_document(TEXTS))
    assert_same(mine.encode(TEXTS), oracle.encode(TEXTS))  # the default route: documents
    assert_same(mine.encode(QUERIES, task="query"), oracle.encode(QUERIES, task="query"), atol=1e-6)
    assert_same(
        mine.encode_query(QUERIES, max_active_dims=2), oracle.encode_query(QUERIES, max_active_dims=2), atol=1e-6
    )
    assert mine.decode(query[0], top_k=3) == oracle.decode(oracle.encode_query(QUERIES)[0], top_k=3)
    torch.testing.assert_close(
        mine.similarity(query, document), oracle.similarity(query, oracle.encode_document(TEXTS)), atol=1e-3, rtol=1e-4
    )
    mine.save(str(tmp_path / "ours"))
    oracle.save(str(tmp_path / "theirs"))
    theirs_of_ours, ours_of_theirs = (
        Oracle(str(tmp_path / "ours"), device="cpu"),
        SparseEncoder(str(tmp_path / "theirs"), device="cpu"),
    )
    for model in (theirs_of_ours, ours_of_theirs):
        assert_same(model.encode_query(QUERIES), query, atol=1e-6)
        assert_same(model.encode_document(TEXTS), document)
    with pytest.raises(ValueError, match=r"task must be one of \['document', 'query'\], got 'passage'"):
        mine.encode(TEXTS, task="passage")
    config = json.loads((tmp_path / "ours" / "router_config.json").read_text())
    config["structure"]["query"] = config["structure"]["document"]
    (tmp_path / "ours" / "router_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="both run models; embedkit loads Routers with one SPLADE route"):
        SparseEncoder(str(tmp_path / "ours"), device="cpu")
    with pytest.raises(ValueError, match="routes queries and documents .* loads it as a SparseEncoder"):
        SentenceTransformer(inference_free_splade, device="cpu")
