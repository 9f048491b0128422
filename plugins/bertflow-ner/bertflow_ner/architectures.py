from typing import List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain, reduce_first, reduce_mean, with_array
from thinc.types import Floats2d

from bertflow.api import BertflowError, Classifier, EncoderListener

WORDPIECES = {"first": reduce_first, "mean": reduce_mean}


@registry.architectures("bertflow.NerHead.v1")
def NerHead(
    wordpieces: str = "first",
    dropout: float = 0.1,
    layers: str = "last",
    n_layers: int = 4,
    grad_factor: float = 1.0,
    nO: Optional[int] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """Per-token tag probabilities from the shared encoder.

    wordpieces (str): "first" labels a token by its first wordpiece (the BERT
        paper's choice), "mean" by the mean of all its wordpieces.
    dropout (float): on the token vectors; default 0.1.
    layers / n_layers (str / int): "last", "mix" or "concat" of the last k layers;
        the paper's feature-based NER is layers = "concat", n_layers = 4 with
        grad_factor = 0 (the encoder frozen).
    grad_factor (float): gradient scale into the encoder (0 freezes it).
    nO (Optional[int]): number of tags; set from the labels at initialize.
    """
    if wordpieces not in WORDPIECES:
        raise BertflowError(f"Unknown wordpieces option {wordpieces!r}: use 'first' or 'mean'.")
    classifier = Classifier(nO=nO, dropout=dropout, activation="softmax")
    listener = EncoderListener(grad_factor=grad_factor, pooling=WORDPIECES[wordpieces](), layers=layers,
                               n_layers=n_layers)
    model = chain(listener, with_array(classifier))
    model.set_ref("output_layer", classifier.get_ref("output_layer"))
    return model
