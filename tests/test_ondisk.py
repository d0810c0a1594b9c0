"""Out-of-core encoding into .npy files, resume, and token-budget batching."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from embedkit._encoding.batching import FIRST_CHUNK, TOKENIZE_CHUNK, text_chunks, token_batches, tokenized_chunks

TEXTS = [f"document {i}: " + "some words " * (i % 11) for i in range(103)]


def test_encode_to_file_matches_in_memory(tiny_model, tmp_path):
    path = str(tmp_path / "out.npy")
    result = tiny_model.encode_to_file(iter(TEXTS), path, chunk_size=10, show_progress_bar=False)
    expected = tiny_model.encode(TEXTS)
    assert isinstance(result, np.memmap) and result.shape == (103, 32)
    assert np.abs(np.load(path) - expected).max() <= 1e-5
    assert not (tmp_path / "out.npy.progress.json").exists()
    binary = tiny_model.encode_to_file(TEXTS, str(tmp_path / "b.npy"), chunk_size=7, precision="ubinary")
    assert np.array_equal(binary, tiny_model.encode(TEXTS, precision="ubinary"))
    empty = tiny_model.encode_to_file([], str(tmp_path / "e.npy"))
    assert empty.shape == (0, 32) and empty.dtype == np.float32


def test_resume_after_an_interruption(tiny_model, tmp_path):
    path = str(tmp_path / "out.npy")

    def interrupted():
        for n, text in enumerate(TEXTS):
            if n == 45:
                raise KeyboardInterrupt
            yield text

    with pytest.raises(KeyboardInterrupt):
        tiny_model.encode_to_file(interrupted(), path, chunk_size=10, show_progress_bar=False)
    assert json.loads((tmp_path / "out.npy.progress.json").read_text())["rows"] == 40
    partial = np.load(path)  # an unfinished file reads as the rows written so far, never as garbage
    assert partial.shape == (40, 32) and np.abs(partial - tiny_model.encode(TEXTS[:40])).max() <= 1e-5
    result = tiny_model.encode_to_file(iter(TEXTS), path, chunk_size=10, resume=True, show_progress_bar=False)
    assert np.abs(np.asarray(result) - tiny_model.encode(TEXTS)).max() <= 1e-5
    with pytest.raises(ValueError, match="the input has 3 texts, but 40 were already encoded"):
        (tmp_path / "out.npy.progress.json").write_text(json.dumps({"rows": 40, "dim": 32, "dtype": "<f4"}))
        tiny_model.encode_to_file(TEXTS[:3], path, resume=True, show_progress_bar=False)


def test_chunks_grow_from_small_so_short_runs_resume_near_where_they_stopped(tiny_model, tmp_path, monkeypatch):
    from embedkit._encoding import npy_file

    monkeypatch.setattr(npy_file, "FIRST_CHUNK", 4)
    sizes = []
    encode = tiny_model.encode
    monkeypatch.setattr(tiny_model, "encode", lambda texts, **kw: sizes.append(len(texts)) or encode(texts, **kw))
    tiny_model.encode_to_file(TEXTS, str(tmp_path / "g.npy"), chunk_size=30, show_progress_bar=False)
    assert sizes == [4, 8, 16, 30, 30, 15]
    empty_start = tmp_path / "never.npy"
    with pytest.raises(KeyboardInterrupt):
        tiny_model.encode_to_file(_raising(), str(empty_start), show_progress_bar=False)
    assert np.load(empty_start).shape == (0, 0)  # interrupted before any row: an empty array, not "pickled data"


def _raising():
    raise KeyboardInterrupt
    yield ""


def test_encode_to_file_bad_input(tiny_model, tmp_path):
    with pytest.raises(TypeError, match="expects an iterable of str"):
        tiny_model.encode_to_file("one string", str(tmp_path / "x.npy"))
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        tiny_model.encode_to_file(TEXTS, str(tmp_path / "x.npy"), chunk_size=0)
    with pytest.raises(ValueError, match="needs saved ranges"):
        tiny_model.encode_to_file(TEXTS, str(tmp_path / "x.npy"), precision="int8")
    with pytest.raises(TypeError, match="input at index 1 is int"):
        tiny_model.encode_to_file(["ok", 5], str(tmp_path / "x.npy"), show_progress_bar=False)


@pytest.mark.slow
def test_200k_texts_stream_with_bounded_memory(tmp_path, prompt_model_dir):
    """A generator of 200k texts goes to disk; peak RSS grows far less than the list of texts would take."""
    script = tmp_path / "stream.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, resource, sys
        import numpy as np
        from embedkit import SentenceTransformer

        def texts():
            for i in range(200_000):
                yield f"short text number {{i}} about topic {{i % 97}}"

        model = SentenceTransformer({prompt_model_dir!r}, device="cpu")
        model.encode([f"warm up {{i}}" for i in range(10_000)], batch_size=64)  # allocator warm-up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        model.encode_to_file(texts(), sys.argv[1], chunk_size=10_000, batch_size=64, show_progress_bar=False)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        as_list = list(texts())
        list_bytes = sys.getsizeof(as_list) + sum(sys.getsizeof(t) for t in as_list)
        del as_list
        check = [f"short text number {{i}} about topic {{i % 97}}" for i in range(0, 200_000, 1009)]
        diff = float(np.abs(np.load(sys.argv[1], mmap_mode="r")[::1009] - model.encode(check)).max())
        print(json.dumps({{"growth": after - before, "list_bytes": list_bytes, "diff": diff}}))
    """)
    )
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "big.npy")], capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-2000:]
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats["diff"] <= 1e-5
    assert np.load(tmp_path / "big.npy", mmap_mode="r").shape == (200_000, 32)
    assert stats["growth"] < stats["list_bytes"] / 4, stats


def test_full_in_memory_encode_of_a_generator_matches(tiny_model):
    assert np.abs(tiny_model.encode(t for t in TEXTS) - tiny_model.encode(TEXTS)).max() == 0


def test_token_budget_batches():
    lengths = np.array([5, 50, 7, 50, 20, 3, 300])
    batches = token_batches(lengths, batch_size=4, max_batch_tokens=100)
    assert [list(b) for b in batches] == [[6], [1, 3], [4, 2, 0, 5]]  # longest first; 300 alone; 2 x 50; 4 x 20
    assert all(len(b) * lengths[b].max() <= 100 or len(b) == 1 for b in batches)
    assert [list(b) for b in token_batches(lengths, 3, None)] == [[6, 1, 3], [4, 2, 0], [5]]


def test_prefetch_tokenizes_the_next_chunk_during_this_one(tiny_model):
    """The accelerator path: chunk n+1 is tokenized while chunk n runs; offsets and features are unchanged."""
    transformer = tiny_model.transformer
    chunks = [TEXTS[:3], TEXTS[3:5], TEXTS[5:]]
    started = [threading.Event() for _ in chunks]

    def recording(offset, texts):
        started[chunks.index(texts)].set()
        return transformer.tokenize(texts)

    plain = list(tokenized_chunks(lambda offset, texts: transformer.tokenize(texts), chunks, prefetch=False))
    prefetched = []
    for n, item in enumerate(tokenized_chunks(recording, chunks, prefetch=True)):
        if n + 1 < len(chunks):
            assert started[n + 1].wait(5), f"chunk {n + 1} was not tokenized ahead"
        prefetched.append(item)
    assert [offset for offset, _ in prefetched] == [offset for offset, _ in plain] == [0, 3, 5]
    assert [features for _, features in prefetched] == [features for _, features in plain]


def test_chunks_ramp_up_on_accelerators():
    """On an accelerator the first chunk is small (the device waits only for it) and the chunks double up to
    the usual size; on CPU every chunk has the usual size. Either way they cover the texts once, in order."""
    texts = [str(i) for i in range(FIRST_CHUNK * 40)]
    ramped, flat = text_chunks(texts, ramp=True), text_chunks(texts, ramp=False)
    sizes = [len(c) for c in ramped]
    assert sizes[:5] == [FIRST_CHUNK, 2 * FIRST_CHUNK, 4 * FIRST_CHUNK, 8 * FIRST_CHUNK, 16 * FIRST_CHUNK]
    assert max(sizes) == TOKENIZE_CHUNK and [len(c) for c in flat][:-1] == [TOKENIZE_CHUNK] * (len(flat) - 1)
    assert sum(ramped, []) == sum(flat, []) == texts
    assert text_chunks([], ramp=True) == [] and text_chunks(["a"], ramp=True) == [["a"]]


def test_max_batch_tokens_keeps_results(tiny_model):
    expected = tiny_model.encode(TEXTS)
    assert np.abs(tiny_model.encode(TEXTS, max_batch_tokens=64) - expected).max() <= 1e-5
    with pytest.raises(ValueError, match="max_batch_tokens must be a positive int"):
        tiny_model.encode(TEXTS, max_batch_tokens=0)


def test_parallel_batches_off_gives_the_same(tiny_model):
    expected, few = tiny_model.encode(TEXTS), tiny_model.encode(TEXTS[:5])  # few texts: split, one batch per core
    tiny_model.parallel_batches = False
    try:
        assert np.abs(tiny_model.encode(TEXTS) - expected).max() <= 1e-5
        assert np.abs(tiny_model.encode(TEXTS[:5]) - few).max() <= 1e-5
    finally:
        tiny_model.parallel_batches = True
