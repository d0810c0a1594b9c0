"""The server cuts over-long inputs exactly as sentence-transformers does when asked to (``truncate``, TEI's
``/embed``, or ``--auto-truncate`` for every request), and otherwise refuses them with a 400 that says how."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest
from helpers import texts_of
from openai import OpenAI
from serving import KEY, running

from integrations.server import Limits, Service

TEXTS = texts_of()  # 10, 300 and 900 tokens


@pytest.fixture(scope="module")
def want(minilm_oracle):
    return minilm_oracle.encode(TEXTS, convert_to_numpy=True)


@pytest.mark.parametrize("auto_truncate", [False, True])
def test_long_inputs_are_cut_as_the_oracle_cuts_them(minilm, want, auto_truncate):
    service = Service(minilm, "all-MiniLM-L6-v2", limits=Limits(auto_truncate=auto_truncate))
    with running(service) as url:
        client = OpenAI(base_url=url + "/v1", api_key=KEY)
        extra = {} if auto_truncate else {"truncate": True}
        answer = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, extra_body=extra)
        np.testing.assert_allclose([d.embedding for d in answer.data], want, atol=2e-5)
        assert answer.usage.prompt_tokens == 10 + 256 + 256
        tei = httpx.post(url + "/embed", json={"inputs": TEXTS, **extra}, headers={"Authorization": f"Bearer {KEY}"})
        assert tei.status_code == 200 and np.allclose(tei.json(), want, atol=2e-5)
        if not auto_truncate:
            with pytest.raises(openai.BadRequestError) as refused:
                client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)
            body = refused.value.body
            assert body["code"] == "context_length_exceeded"
            assert body["message"].startswith("input[1] is 300 tokens long; the model takes at most 256")
            assert "--auto-truncate" in body["message"]
