"""Round-trips of the encoder (and a listening head) keep outputs identical;
a saved pipeline loads with the network off and without the original model."""
import pickle
import shutil
import socket

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example

from bertflow.testing.fixtures import tiny_encoder_config, write_tiny_bert
from conftest import token_vectors

TEXTS = ["the cat sat on the mat", "John loves Paris", "a " * 40]


def outputs(nlp):
    docs = list(nlp.pipe(TEXTS))
    return [token_vectors(d) for d in docs], [d.user_data.get("probe_pred") for d in docs]


def trained(make_nlp):
    nlp = make_nlp(window=16, stride=12, heads=("test_doc_probe",))
    egs = []
    for i, t in enumerate(TEXTS):
        ref = nlp.make_doc(t)
        ref.user_data["probe"] = i % 2
        egs.append(Example(nlp.make_doc(t), ref))
    nlp.initialize(lambda: egs)
    for _ in range(3):
        nlp.update(egs)
    return nlp


def assert_same(a, b):
    for x, y in zip(a[0], b[0]):
        numpy.testing.assert_allclose(x, y, atol=1e-6)
    assert a[1] == b[1]


@pytest.fixture
def block_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_to_disk_from_disk_offline_without_model_dir(tmp_path, block_network):
    import probe_heads  # noqa: F401

    model_dir = write_tiny_bert(tmp_path / "bert-to-delete", seed=3)
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(model_dir, 16, 12))
    nlp.add_pipe("test_doc_probe")
    nlp.initialize()
    before = outputs(nlp)
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(model_dir)  # the saved pipeline must not need the original files
    loaded = spacy.load(tmp_path / "pipeline")
    assert_same(before, outputs(loaded))
    assert loaded.get_pipe("encoder").listening_components == ["test_doc_probe"]


def test_to_bytes_from_bytes_and_pickle(make_nlp, tiny_bert_dir):
    nlp = trained(make_nlp)
    before = outputs(nlp)
    fresh = make_nlp(window=16, stride=12, heads=("test_doc_probe",))
    fresh.from_bytes(nlp.to_bytes())
    assert_same(before, outputs(fresh))
    encoder_bytes = nlp.get_pipe("encoder").to_bytes()
    other = make_nlp(window=16, stride=12)
    other.get_pipe("encoder").from_bytes(encoder_bytes)
    for x, y in zip(before[0], [token_vectors(d) for d in other.pipe(TEXTS)]):
        numpy.testing.assert_allclose(x, y, atol=1e-6)
    unpickled = pickle.loads(pickle.dumps(nlp))
    assert_same(before, outputs(unpickled))


def test_trained_pipeline_resumes_training_after_load(make_nlp, tmp_path):
    nlp = trained(make_nlp)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    egs = [Example(loaded.make_doc(t), loaded.make_doc(t)) for t in TEXTS]
    for eg, i in zip(egs, range(3)):
        eg.reference.user_data["probe"] = i % 2
    losses = loaded.update(egs)
    assert losses["test_doc_probe"] > 0


def test_doc_outputs_roundtrip_docbin(make_nlp):
    nlp = make_nlp(window=16, stride=12)
    doc = nlp.make_doc("the cat sat")
    doc._.text_pair = "who sat?"
    doc = nlp(doc)
    db = DocBin(store_user_data=True, docs=[doc])
    back = list(DocBin().from_bytes(db.to_bytes()).get_docs(nlp.vocab))[0]
    assert back._.text_pair == "who sat?"
    assert back._.trf_windows == doc._.trf_windows
