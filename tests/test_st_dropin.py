"""The rest of the sentence-transformers surface: util's mining and clustering helpers, LoggingHandler,
encode(device=[...]) and a progress bar that moves per batch; each compared with the oracle."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer as Oracle
from sentence_transformers import util as oracle_util

import embedkit
from embedkit import SentenceTransformer, util


def clustered(seed: int, centers: int = 6, per: int = 15, dim: int = 24, spread: float = 0.25) -> np.ndarray:
    """Points around a few random centers, so that communities and paraphrases exist."""
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centers, dim))
    points = np.repeat(middle, per, axis=0) + spread * rng.normal(size=(centers * per, dim))
    return points[rng.permutation(len(points))].astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"top_k": 3, "max_pairs": 40},
        {"query_chunk_size": 7, "corpus_chunk_size": 11, "top_k": 5},
        {"score_function": oracle_util.dot_score, "top_k": 2},
    ],
    ids=["defaults", "few-pairs", "small-chunks", "dot"],
)
def test_paraphrase_mining_embeddings_matches_the_oracle(seed, kwargs):
    emb = torch.from_numpy(clustered(seed))
    ours = util.paraphrase_mining_embeddings(emb, **kwargs)
    theirs = oracle_util.paraphrase_mining_embeddings(emb, **kwargs)
    assert len(ours) == len(theirs)
    assert [(i, j) for _, i, j in ours] == [(i, j) for _, i, j in theirs]
    np.testing.assert_allclose([s for s, _, _ in ours], [s for s, _, _ in theirs], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_paraphrase_mining_with_a_model_matches_the_oracle(minilm_path):
    sentences = [
        "The cat sits outside",
        "A man is playing guitar",
        "I love pasta",
        "The new movie is awesome",
        "The cat plays in the garden",
        "A woman watches TV",
        "The new movie is so great",
        "Do you like pizza?",
    ]
    ours = util.paraphrase_mining(SentenceTransformer(minilm_path, device="cpu"), sentences)
    theirs = oracle_util.paraphrase_mining(Oracle(minilm_path, device="cpu"), sentences)
    assert [(i, j) for _, i, j in ours] == [(i, j) for _, i, j in theirs]
    np.testing.assert_allclose([s for s, _, _ in ours], [s for s, _, _ in theirs], atol=1e-5)
    assert ours[0][1:] == [3, 6]  # "The new movie is awesome" / "... so great"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "threshold, min_size, batch", [(0.75, 10, 1024), (0.9, 5, 16), (0.6, 3, 7), (0.99, 2, 1024), (0.5, 200, 64)]
)
def test_community_detection_matches_the_oracle(seed, threshold, min_size, batch):
    emb = clustered(seed, spread=0.35)
    ours = util.community_detection(emb, threshold=threshold, min_community_size=min_size, batch_size=batch)
    theirs = oracle_util.community_detection(
        torch.from_numpy(emb), threshold=threshold, min_community_size=min_size, batch_size=batch
    )
    assert ours == theirs
    if min_size <= 15 and threshold <= 0.75:
        assert ours  # the data has communities to find


def test_community_detection_edge_cases():
    assert util.community_detection(np.zeros((0, 4), np.float32)) == []
    assert util.community_detection(np.ones((3, 4), np.float32), min_community_size=10) == []
    assert util.community_detection(np.ones((3, 4), np.float32), min_community_size=3) == [[0, 1, 2]]


def test_normalize_and_truncate_embeddings_match_the_oracle():
    emb = torch.from_numpy(clustered(3))
    torch.testing.assert_close(util.normalize_embeddings(emb), oracle_util.normalize_embeddings(emb))
    np.testing.assert_allclose(
        util.normalize_embeddings(emb.numpy()), oracle_util.normalize_embeddings(emb).numpy(), rtol=1e-6
    )
    for dim in (None, 8):
        torch.testing.assert_close(util.truncate_embeddings(emb, dim), oracle_util.truncate_embeddings(emb, dim))
        np.testing.assert_array_equal(
            util.truncate_embeddings(emb.numpy(), dim), oracle_util.truncate_embeddings(emb.numpy(), dim)
        )


def test_logging_handler_writes_through_tqdm(capsys):
    from embedkit import LoggingHandler

    logger = logging.getLogger("embedkit-test-handler")
    handler = LoggingHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        logger.warning("hello %s", "world")
    finally:
        logger.removeHandler(handler)
    assert capsys.readouterr().out == "WARNING hello world\n"
    assert "LoggingHandler" in embedkit.__all__


@pytest.mark.slow
def test_encode_with_a_list_of_devices_uses_and_stops_a_pool(minilm_path, monkeypatch):
    import embedkit.model

    started = []
    real = embedkit.model.EncodePool

    class Recording(real):
        def __init__(self, model, devices):
            super().__init__(model, devices)
            started.append(self)

    monkeypatch.setattr(embedkit.model, "EncodePool", Recording)
    model = SentenceTransformer(minilm_path, device="cpu")
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(40)]
    emb = model.encode(texts, device=["cpu", "cpu"], batch_size=8, normalize_embeddings=True)
    oracle = Oracle(minilm_path, device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(emb, oracle, atol=1e-5)
    assert len(started) == 1 and started[0].devices == ["cpu", "cpu"] and started[0].closed
    assert model.encode([], device=["cpu"]).shape == (0, 384) and len(started) == 1  # nothing to do: no pool
    with pytest.raises(ValueError, match="either pool or a list of devices"):
        model.encode(texts, device=["cpu"], pool=object())


def test_encode_to_file_progress_moves_per_batch(tmp_path, prompt_model_dir, monkeypatch):
    import embedkit._encoding.npy_file

    positions = []
    real_tqdm = embedkit._encoding.npy_file.tqdm

    class Recording(real_tqdm):
        def update(self, n=1):
            positions.append(n)
            return super().update(n)

    monkeypatch.setattr(embedkit._encoding.npy_file, "tqdm", Recording)
    model = SentenceTransformer(prompt_model_dir, device="cpu")
    texts = [f"text {i}" for i in range(100)]
    model.encode_to_file(texts, str(tmp_path / "out.npy"), chunk_size=100, batch_size=10)
    assert sum(positions) == 100 and len(positions) >= 10  # not one jump per 100-text chunk
