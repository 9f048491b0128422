"""A classifier layer on pooled or per-token vectors: dropout then a linear
output with softmax, sigmoid or no activation."""
from functools import partial
from typing import Optional

import numpy
import torch
from spacy.util import registry
from thinc.api import Dropout, Model, Ops, chain, get_width, zero_init
from thinc.types import Floats2d, FloatsXd, Shape

from bertflow.errors import BertflowError, Errors

ACTIVATIONS = ("softmax", "sigmoid", "linear")


@registry.architectures("bertflow.Classifier.v1")
def Classifier(
    nO: Optional[int] = None,
    nI: Optional[int] = None,
    dropout: float = 0.1,
    activation: str = "softmax",
    init_std: float = 0.02,
) -> Model[Floats2d, Floats2d]:
    """nO (Optional[int]): number of outputs (labels); inferred at initialize when None.
    nI (Optional[int]): input width; inferred from sample data when None.
    dropout (float): dropout rate on the input (the BERT paper used 0.1).
    activation (str): "softmax" (exclusive classes), "sigmoid" (multi-label) or
        "linear" (regression, or raw scores for a custom loss).
    init_std (float): the output weights start as N(0, init_std²), biases at 0,
        as BERT initialises its heads (initializer_range 0.02).

    Why not thinc's zero-initialised Softmax: with zero weights the encoder
    gets no gradient at first and a vanishing one for many steps; under Adam
    those tiny gradients fall below epsilon, so the encoder barely fine-tunes.
    Hugging Face's heads start at N(0, 0.02²), and so do these.

    With softmax and sigmoid the output is probabilities, and the backward pass
    takes the gradient with respect to the *logits* (``probs - truths`` for
    cross-entropy), as thinc's Softmax does; ``bertflow.heads.losses`` returns
    exactly that.
    """
    init_W = partial(bert_normal_init, std=init_std)
    if activation == "softmax":
        out = dense(nO, nI, init_W=init_W, softmax=True)
    elif activation == "sigmoid":
        out = chain(dense(nO, nI, init_W=init_W), sigmoid_output())
    elif activation == "linear":
        out = dense(nO, nI, init_W=init_W)
    else:
        raise BertflowError(Errors.E057.format(activation=activation, activations=', '.join(ACTIVATIONS)))
    model = chain(Dropout(dropout), out)
    model.attrs["activation"] = activation
    model.set_ref("output_layer", out.layers[0] if activation == "sigmoid" else out)
    return model


def bert_normal_init(ops: Ops, shape: Shape, *, std: float = 0.02) -> FloatsXd:
    """BERT's initialisation, N(0, std²) with std 0.02, from numpy's global
    generator (seeded by spaCy's fix_random_seed, so training stays
    reproducible). Not thinc's ``normal_init``, whose std is 1/sqrt(fan-in)."""
    return ops.asarray_f(numpy.random.normal(0.0, std, size=shape).astype("float32"))


def dense(nO: Optional[int] = None, nI: Optional[int] = None, *, init_W=bert_normal_init, init_b=zero_init,
          softmax: bool = False) -> Model[Floats2d, Floats2d]:
    """``X @ W.T + b``, then a softmax over each row when ``softmax``: thinc's
    Linear and Softmax (same parameters "W" (nO, nI) and "b" (nO,), same names,
    so pipelines saved with those load into it), with the products computed
    by torch on the CPU (in the encoder's thread pool; numpy's own BLAS would
    start a second pool of spinning threads) and by cupy on a GPU. thinc's
    NumpyOps send them through blis, which runs a head's skinny products
    (hundreds of token rows times a handful of labels) several times slower
    on CPUs without blis' tuned kernels. With softmax the backward pass takes the gradient with
    respect to the logits, as thinc's Softmax does."""
    return Model("softmax" if softmax else "linear", _dense_forward, init=partial(_dense_init, init_W, init_b),
                 dims={"nO": nO, "nI": nI}, params={"W": None, "b": None}, attrs={"softmax": softmax})


def _dense_init(init_W, init_b, model: Model, X: Optional[Floats2d] = None, Y: Optional[Floats2d] = None) -> None:
    if X is not None and model.has_dim("nI") is None:
        model.set_dim("nI", get_width(X))
    if Y is not None and model.has_dim("nO") is None:
        model.set_dim("nO", get_width(Y))
    model.set_param("W", init_W(model.ops, (model.get_dim("nO"), model.get_dim("nI"))))
    model.set_param("b", init_b(model.ops, (model.get_dim("nO"),)))


def _dense_forward(model: Model, X: Floats2d, is_train: bool):
    W, b = model.get_param("W"), model.get_param("b")
    Y = _matmul(model.ops, X, W.T)
    Y += b
    if model.attrs["softmax"]:
        Y = model.ops.softmax(Y)

    def backprop(dY: Floats2d) -> Floats2d:
        model.inc_grad("b", dY.sum(axis=0))
        model.inc_grad("W", _matmul(model.ops, dY.T, X))
        return _matmul(model.ops, dY, W)

    return Y, backprop


def _matmul(ops: Ops, A: Floats2d, B: Floats2d) -> Floats2d:
    if ops.xp is numpy and A.dtype == B.dtype and A.dtype in (numpy.float32, numpy.float64):
        return torch.matmul(torch.from_numpy(A), torch.from_numpy(B)).numpy()
    return ops.xp.matmul(A, B)


def sigmoid_output() -> Model[Floats2d, Floats2d]:
    """Sigmoid whose backward pass passes the logit gradient straight through."""
    return Model("sigmoid_output", _sigmoid_forward)


def _sigmoid_forward(model: Model, X: Floats2d, is_train: bool):
    Y = model.ops.sigmoid(X)
    return Y, lambda dY: dY
