"""Whose fault an error is: the client's mistakes (the stores' error tree) answer 4xx with a message that
names them; a reranker that yields NaN answers 500 with the index search's own message; anything else
(a bug of ours) answers a 500 that says nothing internal, and the server log has the traceback."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from serving import running
from store_workers import HashEncoder

from integrations import open_index
from integrations._shared.rerank import scores_of


class Reranker:
    """A reranker whose model broke: a NaN or infinite score for the second passage."""

    def __init__(self, bad: float):
        self.bad = bad

    def predict(self, pairs, show_progress_bar=False):
        return np.array([1.0, self.bad, 0.5][: len(pairs)])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_reranker_that_yields_nan_or_inf_is_the_servers_fault_said_plainly(make_service, tmp_path, client, bad):
    index = open_index(f"sqlite:///{tmp_path}/docs.db", HashEncoder())
    service = make_service(indexes={"docs": index}, reranker=Reranker(bad))
    with pytest.raises(ValueError) as direct:  # what the index search says of it, in the library
        scores_of(lambda q, ps: Reranker(bad).predict(ps), "q", ["a", "b", "c"])
    said = str(direct.value)
    assert said == f"the reranker gave a score of {bad} for the passage at index 1"
    with running(service) as url:
        client.post(url + "/v1/indexes/docs/add", json={"documents": [{"text": t} for t in ("a", "b", "c")]})
        answers = [
            client.post(url + "/v1/rerank", json={"query": "q", "documents": ["a", "b", "c"]}),
            client.post(url + "/rerank", json={"query": "q", "texts": ["a", "b", "c"]}),
            client.post(url + "/v1/indexes/docs/search", json={"query": "q", "k": 3, "rerank": True}),
        ]
    for answer in answers:
        assert answer.status_code == 500, answer.text
        assert answer.json()["error"]["message"] == said and answer.json()["error"]["type"] == "server_error"


def test_lone_surrogates_are_refused_and_named(make_service, tmp_path, client):
    index = open_index(f"sqlite:///{tmp_path}/docs.db", HashEncoder())
    with running(make_service(indexes={"docs": index})) as url:
        cases = [
            (
                "/v1/embeddings",
                b'{"input": ["fine", "ab\\ud800c"]}',
                "input[1] contains a lone surrogate at position 2",
            ),
            ("/embed", b'{"inputs": "\\udfff"}', "inputs[0] contains a lone surrogate at position 0"),
            (
                "/v1/indexes/docs/search",
                b'{"query": "q", "filter": {"tag": "x\\ud800"}}',
                "filter: filter['tag']: a lone surrogate at position 1 (not valid UTF-8)",
            ),
            ("/v1/indexes/docs/search", b'{"query": "q\\ud800"}', "contains a lone surrogate at position 1"),
        ]
        for path, body, message in cases:
            answer = client.post(url + path, content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 400, (path, answer.text)
            assert message in answer.json()["error"]["message"], (path, answer.text)


def test_a_bug_of_ours_is_a_500_that_tells_nothing_internal(make_service, tmp_path, client, caplog):
    index = open_index(f"sqlite:///{tmp_path}/docs.db", HashEncoder())

    def broken(*args, **kwargs):
        raise ValueError("secret detail: /srv/private/docs.db row 17")

    index.get = broken  # a ValueError from our own code is not the client's fault
    with running(make_service(indexes={"docs": index})) as url, caplog.at_level(logging.ERROR):
        answer = client.post(url + "/v1/indexes/docs/get", json={"ids": ["a"]})
        missing = client.post(url + "/v1/indexes/docs/delete", json={"ids": ["nope"]})
    assert answer.status_code == 500 and "secret" not in answer.text
    assert answer.json()["error"]["message"] == "internal error (the server log has the details)"
    assert "secret detail: /srv/private/docs.db row 17" in caplog.text and "Traceback" in caplog.text
    assert missing.status_code == 200 and missing.json() == {"deleted": 0}  # the store's own answer stands
