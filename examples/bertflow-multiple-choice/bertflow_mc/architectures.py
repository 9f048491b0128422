"""The multiple-choice head's model: ``bertflow_mc.MultipleChoiceHead.v1``."""
from typing import List

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain
from thinc.types import Floats2d

from bertflow.api import Classifier, DocPooler


@registry.architectures("bertflow_mc.MultipleChoiceHead.v1")
def MultipleChoiceModel(pooling: str = "cls", dropout: float = 0.1, grad_factor: float = 1.0) -> Model[List[Doc], Floats2d]:
    """One score per doc: a learned vector dotted with the pooled [CLS] (plus a bias)."""
    return chain(DocPooler(pooling, grad_factor), Classifier(nO=1, dropout=dropout, activation="linear"))
