"""The deployer's switches of ``embedkit serve``: the key from a file, the names the model answers to, the
request limits, and an index listing that keeps the server's paths to itself."""

from __future__ import annotations

import argparse

import httpx
import pytest
from openai import NotFoundError, OpenAI
from serving import KEY, running, spawn_server

from integrations import open_index
from integrations.cli.serve import api_key_of
from integrations.server import Service


def key_args(api_key=None, api_key_file=None):
    return argparse.Namespace(api_key=api_key, api_key_file=api_key_file)


def test_the_key_comes_from_the_flag_a_file_or_the_environment(tmp_path):
    (tmp_path / "key").write_text("s3cret\nignored second line\n")
    (tmp_path / "empty").write_text("\n")
    assert api_key_of(key_args("flag"), {"EMBEDKIT_API_KEY": "env"}) == "flag"
    assert api_key_of(key_args(api_key_file=str(tmp_path / "key")), {"EMBEDKIT_API_KEY": "env"}) == "s3cret"
    assert api_key_of(key_args(), {"EMBEDKIT_API_KEY": "env", "EMBEDKIT_API_KEY_FILE": "/nowhere"}) == "env"
    assert api_key_of(key_args(), {"EMBEDKIT_API_KEY_FILE": str(tmp_path / "key")}) == "s3cret"
    assert api_key_of(key_args(), {}) is None
    with pytest.raises(ValueError, match="give --api-key or --api-key-file, not both"):
        api_key_of(key_args("a", str(tmp_path / "key")), {})
    with pytest.raises(ValueError, match=r"--api-key-file .*/missing: No such file or directory"):
        api_key_of(key_args(api_key_file=str(tmp_path / "missing")), {})
    with pytest.raises(ValueError, match=r"EMBEDKIT_API_KEY_FILE .*/empty: the file's first line is empty"):
        api_key_of(key_args(), {"EMBEDKIT_API_KEY_FILE": str(tmp_path / "empty")})


def test_the_model_answers_to_its_served_names_and_the_listing_hides_paths(tiny_model, tmp_path):
    index = open_index(f"sqlite:///{tmp_path}/private-name.db", tiny_model)
    service = Service(tiny_model, str(tmp_path / "models/tiny"), indexes={"kb": index}, model_names=["mini", "e5"])
    with running(service) as url:
        client = OpenAI(base_url=url + "/v1", api_key=KEY)
        assert [m.id for m in client.models.list().data] == ["mini", "e5"]
        for name in ("mini", "e5", "tiny", str(tmp_path / "models/tiny")):  # a served name, or the model's own
            answer = client.embeddings.create(input="tea", model=name)
            assert answer.data[0].embedding == pytest.approx(tiny_model.encode("tea").tolist(), abs=1e-6)
        refused = r"model 'other' is not served here; this server serves \['mini', 'e5'\]"
        with pytest.raises(NotFoundError, match=refused):
            client.embeddings.create(input="tea", model="other")
        listing = httpx.get(url + "/v1/indexes", headers={"Authorization": f"Bearer {KEY}"})
        assert listing.json()["data"][0]["store"] == "SQLIndex" and "private-name" not in listing.text


@pytest.mark.slow
def test_the_command_line_switches_reach_the_server(prompt_model_dir, tmp_path):
    (tmp_path / "key").write_text(KEY + "\n")
    args = ["-m", prompt_model_dir, "--api-key-file", str(tmp_path / "key"), "--served-model-name", "mini"]
    args += ["--max-client-batch-size", "3", "--max-body-bytes", "2000"]
    with spawn_server(args) as (process, url):
        auth = {"Authorization": f"Bearer {KEY}"}
        assert KEY not in " ".join(process.args)  # the key is not on the command line
        assert httpx.get(url + "/v1/models").status_code == 401
        assert [m["id"] for m in httpx.get(url + "/v1/models", headers=auth).json()["data"]] == ["mini"]
        ok = httpx.post(url + "/v1/embeddings", json={"input": ["a", "b", "c"], "model": "mini"}, headers=auth)
        assert ok.status_code == 200 and len(ok.json()["data"]) == 3
        many = httpx.post(url + "/v1/embeddings", json={"input": ["a"] * 4}, headers=auth)
        assert many.status_code == 413 and "at most 3 per request" in many.json()["error"]["message"]
        big = httpx.post(url + "/v1/embeddings", json={"input": "x" * 3000}, headers=auth)
        assert big.status_code == 413


@pytest.mark.slow
def test_the_onnx_backend_serves_from_the_command_line(prompt_model_dir, tmp_path):
    import shutil

    import numpy as np

    from embedkit import SentenceTransformer

    folder = shutil.copytree(prompt_model_dir, tmp_path / "model")  # the int8 engine is saved beside the weights
    texts = ["Green tea is steamed.", "Espresso is brewed under pressure."]
    with spawn_server(["-m", str(folder), "--backend", "onnx", "--api-key", KEY]) as (_, url):
        answer = httpx.post(
            url + "/v1/embeddings", json={"input": texts}, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
        )
        served = np.array([d["embedding"] for d in answer.json()["data"]])
    int8 = SentenceTransformer(str(folder), backend="onnx").encode(texts)
    np.testing.assert_allclose(served, int8, atol=1e-5)  # the int8 engine, as embedkit runs it in process
    torch = SentenceTransformer(str(folder)).encode(texts)
    assert (np.sum(served * torch, axis=1) > 0.99).all()  # and close to the float model
    assert not np.allclose(served, torch, atol=1e-6)  # yet not the torch backend's vectors
