from typing import List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain
from thinc.types import Floats2d

from bertflow.api import Classifier, DocPooler


@registry.architectures("bertflow.TextCatHead.v1")
def TextCatHead(
    exclusive_classes: bool = True,
    pooling: str = "cls",
    dropout: float = 0.1,
    layers: str = "last",
    n_layers: int = 4,
    grad_factor: float = 1.0,
    nO: Optional[int] = None,
) -> Model[List[Doc], Floats2d]:
    """Pooled encoder output -> dropout -> softmax (exclusive) or sigmoid (multi-label).

    exclusive_classes (bool): one label per doc (softmax) or any number (sigmoid).
    pooling (str): "cls", "pooler" (BERT's pretrained dense+tanh over [CLS]), "mean" or "max".
    dropout (float): on the pooled vector; default 0.1 as in BERT.
    layers / n_layers / grad_factor: see ``bertflow.DocPooler.v1``.
    nO (Optional[int]): number of labels; set from the labels at initialize.
    """
    activation = "softmax" if exclusive_classes else "sigmoid"
    classifier = Classifier(nO=nO, dropout=dropout, activation=activation)
    model = chain(DocPooler(pooling, grad_factor, layers, n_layers), classifier)
    model.set_ref("output_layer", classifier.get_ref("output_layer"))
    model.attrs["exclusive_classes"] = exclusive_classes
    return model
