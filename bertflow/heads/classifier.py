"""A classifier layer on pooled or per-token vectors: dropout then a linear
output with softmax, sigmoid or no activation."""
from typing import Optional

from spacy.util import registry
from thinc.api import Dropout, Linear, Model, Softmax, chain
from thinc.types import Floats2d

from ..errors import BertflowError

ACTIVATIONS = ("softmax", "sigmoid", "linear")


@registry.architectures("bertflow.Classifier.v1")
def Classifier(
    nO: Optional[int] = None,
    nI: Optional[int] = None,
    dropout: float = 0.1,
    activation: str = "softmax",
) -> Model[Floats2d, Floats2d]:
    """nO (Optional[int]): number of outputs (labels); inferred at initialize when None.
    nI (Optional[int]): input width; inferred from sample data when None.
    dropout (float): dropout rate on the input (the BERT paper used 0.1).
    activation (str): "softmax" (exclusive classes), "sigmoid" (multi-label) or
        "linear" (regression, or raw scores for a custom loss).

    With softmax and sigmoid the output is probabilities, and the backward pass
    takes the gradient with respect to the *logits* (``probs - truths`` for
    cross-entropy), as thinc's Softmax does; ``bertflow.heads.losses`` returns
    exactly that.
    """
    if activation == "softmax":
        out = Softmax(nO, nI)
    elif activation == "sigmoid":
        out = chain(Linear(nO, nI), sigmoid_output())
    elif activation == "linear":
        out = Linear(nO, nI)
    else:
        raise BertflowError(f"Unknown activation {activation!r}. Use one of: {', '.join(ACTIVATIONS)}.")
    model = chain(Dropout(dropout), out)
    model.attrs["activation"] = activation
    model.set_ref("output_layer", out.layers[0] if activation == "sigmoid" else out)
    return model


def sigmoid_output() -> Model[Floats2d, Floats2d]:
    """Sigmoid whose backward pass passes the logit gradient straight through."""
    return Model("sigmoid_output", _sigmoid_forward)


def _sigmoid_forward(model: Model, X: Floats2d, is_train: bool):
    Y = model.ops.sigmoid(X)
    return Y, lambda dY: dY
