"""Model builders of the similarity plugin. The bi-encoder needs none of its
own (``bertflow.DocPooler.v1`` from the core pools the sentence); the
cross-encoder's head is ``bertflow.PairClassifierHead.v1``."""
from typing import List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain
from thinc.types import Floats2d

from bertflow.api import BertflowError, Classifier, DocPooler

from .errors import Errors

MODES = ("regression", "classification")


@registry.architectures("bertflow.PairClassifierHead.v1")
def PairClassifierHead(mode: str = "regression", pooling: str = "pooler", dropout: float = 0.1, grad_factor: float = 1.0,
                       nO: Optional[int] = None) -> Model[List[Doc], Floats2d]:
    """The pooled [CLS] of the pair (BERT's pooler by default, as BertForSequenceClassification)
    -> dropout -> one sigmoid output (regression) or a softmax over labels."""
    if mode not in MODES:
        raise BertflowError(Errors.SIM001.format(mode=mode))
    classifier = Classifier(nO=1 if mode == "regression" else nO, dropout=dropout,
                            activation="sigmoid" if mode == "regression" else "softmax")
    model = chain(DocPooler(pooling, grad_factor), classifier)
    model.set_ref("output_layer", classifier.get_ref("output_layer"))
    model.attrs["mode"] = mode
    return model
