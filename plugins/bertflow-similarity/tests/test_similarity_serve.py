"""The similarity plugin's ``bertflow serve`` endpoints, over HTTP: /similarity
equals doc.similarity, /search equals bertflow.search, bad bodies get a 422
with the plugin's code, and a pipeline without the head has neither."""
import httpx
import pytest
import spacy

from bertflow.api import ServeSettings, create_app, running_server, tiny_encoder_config
from bertflow_similarity.retrieval import search

TEXTS = ["the cat sat on the mat", "a dog ran fast", "john loves paris", "mary ran to london"]


def make(tiny_bert_dir, *heads):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir))
    for head in heads:
        nlp.add_pipe(head)
    nlp.initialize()
    return nlp


def test_similarity_and_search_endpoints_answer_what_the_python_api_does(tiny_bert_dir):
    nlp = make(tiny_bert_dir, "bertflow_similarity")
    with running_server(create_app(ServeSettings(model="in-memory"), nlp=nlp)) as url:
        pairs = [[TEXTS[0], TEXTS[1]], [TEXTS[2], TEXTS[3]], [TEXTS[0], TEXTS[0]]]
        scores = httpx.post(f"{url}/similarity", json={"pairs": pairs}).json()["scores"]
        assert scores == pytest.approx([nlp(a).similarity(nlp(b)) for a, b in pairs], abs=1e-5)
        assert scores[2] == pytest.approx(1.0, abs=1e-5)
        got = httpx.post(f"{url}/search", json={"queries": TEXTS[:2], "documents": TEXTS, "top_k": 2}).json()
        want = search(nlp, TEXTS[:2], TEXTS, top_k=2)
        assert [[r["index"] for r in q] for q in got["results"]] == [[r["index"] for r in q] for q in want]
        for bad, where in (({"pairs": [["a"]]}, "body.pairs[0]"), ({"pairs": []}, "body.pairs"),
                           ({"queries": "a", "documents": ["b"]}, "body.queries"),
                           ({"queries": ["a"], "documents": ["b"], "top_k": "2"}, "body.top_k"),
                           ({"queries": ["a"], "documents": ["b"], "top_k": 0}, "top_k")):
            endpoint = "similarity" if "pairs" in bad else "search"
            answer = httpx.post(f"{url}/{endpoint}", json=bad)
            assert answer.status_code == 422 and answer.json()["error"]["code"].startswith("SIM")
            assert where in answer.json()["error"]["message"]
        assert set(httpx.get(f"{url}/openapi.json").json()["paths"]) >= {"/similarity", "/search"}


def test_a_pipeline_without_the_head_has_no_such_endpoints(tiny_bert_dir):
    nlp = make(tiny_bert_dir)  # the encoder alone: no similarity head
    with running_server(create_app(ServeSettings(model="in-memory"), nlp=nlp)) as url:
        answer = httpx.post(f"{url}/search", json={"queries": ["a"], "documents": ["b"]})
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "E156"
