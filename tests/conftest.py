import numpy
import pytest
import spacy

import bertflow  # noqa: F401
from bertflow.testing.fixtures import tiny_encoder_config

from probe_heads import make_doc_probe, make_token_probe  # noqa: F401  (registers the factories)


@pytest.fixture
def make_nlp(tiny_bert_dir):
    """Build a blank pipeline with the encoder on the tiny BERT and optional probes."""

    def make(window=256, stride=192, keep_layers=1, heads=(), head_configs=None, **model_args):
        nlp = spacy.blank("en")
        nlp.add_pipe("bertflow_encoder", name="encoder",
                     config=tiny_encoder_config(tiny_bert_dir, window, stride, keep_layers, **model_args))
        for head in heads:
            nlp.add_pipe(head, config=(head_configs or {}).get(head, {}))
        return nlp

    return make


def token_vectors(doc):
    """Mean of each token's aligned wordpiece vectors, from doc._.trf_data."""
    data = doc._.trf_data
    flat = data.model_output["last_hidden_state"].reshape(-1, data.width)
    out, start = [], 0
    for n in data.align.lengths:
        idx = numpy.asarray(data.align.dataXd[start: start + n]).ravel()
        out.append(flat[idx].mean(axis=0))
        start += n
    return numpy.stack(out)
