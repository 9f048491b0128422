from typing import List, Optional

import numpy
from spacy.attrs import IS_DIGIT, IS_LOWER, IS_PUNCT, IS_TITLE, IS_UPPER
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain, reduce_first, reduce_mean, with_array
from thinc.types import Floats2d, Ragged

from bertflow.api import BertflowError, Classifier, EncoderListener

from .errors import Errors

WORDPIECES = {"first": reduce_first, "mean": reduce_mean}


@registry.architectures("bertflow.NerHead.v1")
def NerHead(
    wordpieces: str = "first",
    dropout: float = 0.1,
    layers: str = "last",
    n_layers: int = 4,
    grad_factor: float = 1.0,
    nO: Optional[int] = None,
    case_features: bool = False,
) -> Model[List[Doc], Ragged]:
    """Per-token tag probabilities from the shared encoder, for the whole
    batch as one ``Ragged`` (rows: every doc's tokens one after another;
    lengths: tokens per doc).

    wordpieces (str): "first" labels a token by its first wordpiece (the BERT
        paper's choice), "mean" by the mean of all its wordpieces.
    dropout (float): on the token vectors; default 0.1.
    layers / n_layers (str / int): "last", "mix" or "concat" of the last k layers;
        the paper's feature-based NER is layers = "concat", n_layers = 4 with
        grad_factor = 0 (the encoder frozen).
    grad_factor (float): gradient scale into the encoder (0 freezes it).
    nO (Optional[int]): number of tags; set from the labels at initialize.
    case_features (bool): add each token's letter case to its vector (``token_case``):
        an uncased encoder (minilm-l6, bert-base-uncased) cannot see that "Apple"
        is capitalised, the strongest single cue for a name in English text.
    """
    if wordpieces not in WORDPIECES:
        raise BertflowError(Errors.NER001.format(wordpieces=wordpieces))
    classifier = Classifier(nO=nO, dropout=dropout, activation="softmax")
    # one Ragged for the batch: the classifier runs on all its rows (with_array), nothing is split per doc
    listener = EncoderListener(grad_factor=grad_factor, pooling=WORDPIECES[wordpieces](), layers=layers,
                               n_layers=n_layers, ragged=True)
    tokens = with_case(listener) if case_features else listener
    model = chain(tokens, with_array(classifier))
    model.set_ref("output_layer", classifier.get_ref("output_layer"))
    return model


CASE_ATTRS = [IS_TITLE, IS_UPPER, IS_LOWER, IS_DIGIT, IS_PUNCT]


def token_case() -> Model[List[Doc], List[Floats2d]]:
    """Per token, six 0/1 features of its letter case and position: title case,
    upper case, lower case, digits, punctuation, first token of the doc (where
    a capital says little). Read from the lexemes' flags, one array per doc;
    nothing to learn, no gradient."""
    return Model("token_case", _case_forward, dims={"nO": len(CASE_ATTRS) + 1})


def _case_forward(model: Model, docs: List[Doc], is_train: bool):
    ops = model.ops
    outputs = []
    for doc in docs:
        feats = numpy.zeros((len(doc), len(CASE_ATTRS) + 1), dtype="float32")
        if len(doc):
            feats[:, :-1] = doc.to_array(CASE_ATTRS)
            feats[0, -1] = 1.0
        outputs.append(ops.asarray2f(feats))
    return outputs, lambda d_outputs: []


def with_case(vectors: Model[List[Doc], List[Floats2d]]) -> Model[List[Doc], List[Floats2d]]:
    """Each token's vector from ``vectors`` followed by its ``token_case``
    features; the gradient of the vector part goes back to ``vectors``.
    ``vectors`` may give a list of per-doc arrays or one ``Ragged``; the
    output has the same form."""
    case = token_case()
    return Model(f"{vectors.name}+case", _with_case_forward, init=_with_case_init, layers=[vectors, case],
                 dims={"nO": None})


def _with_case_init(model: Model, X=None, Y=None) -> None:
    vectors, case = model.layers
    vectors.initialize(X=X)
    model.set_dim("nO", vectors.get_dim("nO") + case.get_dim("nO"), force=True)


def _with_case_forward(model: Model, docs: List[Doc], is_train: bool):
    vectors, case = model.layers
    xp = model.ops.xp
    Xs, bp_vectors = vectors(docs, is_train)
    Cs = case.predict(docs)
    if isinstance(Xs, Ragged):
        width = Xs.dataXd.shape[1]
        C = xp.concatenate(Cs) if Cs else model.ops.alloc2f(0, case.get_dim("nO"))

        def backprop_ragged(d_output: Ragged):
            return bp_vectors(Ragged(model.ops.as_contig(d_output.dataXd[:, :width]), d_output.lengths))

        return Ragged(xp.hstack((Xs.dataXd, C)), Xs.lengths), backprop_ragged
    width = Xs[0].shape[1] if Xs else 0

    def backprop(d_outputs: List[Floats2d]):
        return bp_vectors([model.ops.as_contig(d[:, :width]) for d in d_outputs])

    return [xp.hstack((x, c)) for x, c in zip(Xs, Cs)], backprop
