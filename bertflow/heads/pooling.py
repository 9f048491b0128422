"""Doc-level pooling over the encoder's wordpieces: [CLS], BERT's pooler,
masked mean, max, and the sentence-transformers mean ("mean_all").

For "mean" and "max" only the doc's own wordpieces count (a text pair's and
padding never do), each once, from the window that owns it. With several
windows, [CLS] (and the pooler output) is the mean over the windows.
"mean_all" averages every non-padding position of the doc's rows, special
tokens included, as sentence-transformers does.
"""
from typing import List

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from thinc.api import Model
from thinc.layers.chain import forward as chain_forward, init as chain_init
from thinc.types import Floats2d
from transformers.utils import ModelOutput

from ..errors import BertflowError, Errors
from .listener import encoder_output, known_width

POOLINGS = ("cls", "pooler", "mean", "max", "mean_all")


def doc_pool(mode: str = "cls", grad_factor: float = 1.0, layers: str = "last") -> Model[List[TransformerData], Floats2d]:
    """One vector per doc from encoder outputs (after layer selection): "cls",
    "pooler", "mean" or "max" over the doc's wordpieces; gradients into the
    encoder are scaled by ``grad_factor``. ``DocPooler`` = listener + this."""
    if mode not in POOLINGS:
        raise BertflowError(Errors.E011.format(mode=mode, options=", ".join(POOLINGS)))
    if mode == "pooler" and layers != "last":
        raise BertflowError(Errors.E014.format(layers=layers))
    return Model(f"doc_pool({mode})", _pool_forward, attrs={"mode": mode, "grad_factor": grad_factor,
                                                              "layers": layers})


def pooled_rows(data: TransformerData, mode: str) -> numpy.ndarray:
    """Flat indices (into rows*seq_len) of the wordpieces ``mode`` pools over."""
    n_rows, seq_len = data.model_output["last_hidden_state"].shape[:2]
    if mode == "cls":
        return numpy.arange(n_rows) * seq_len
    if mode == "mean_all":  # every non-padding position, [CLS]/[SEP] included
        lengths = numpy.asarray(data.wordpieces.lengths, dtype="int64")[:n_rows]
        return numpy.concatenate([r * seq_len + numpy.arange(n) for r, n in enumerate(lengths)])
    return numpy.unique(numpy.asarray(data.align.dataXd))


def _pool_forward(model: Model, trf_datas: List[TransformerData], is_train: bool):
    mode = model.attrs["mode"]
    xp = model.ops.xp
    widths = [t.model_output["last_hidden_state"].shape[-1] for t in trf_datas if "last_hidden_state" in t.model_output]
    width = widths[0] if widths else 0
    Y = model.ops.alloc2f(len(trf_datas), width)
    cache = []
    for i, data in enumerate(trf_datas):
        if "last_hidden_state" not in data.model_output or data.model_output["last_hidden_state"].size == 0:
            cache.append(None)
            continue
        if mode == "pooler":
            if "pooler_output" not in data.model_output:
                raise BertflowError(Errors.E014.format(layers=model.attrs["layers"]))
            X = data.model_output["pooler_output"]  # (windows, width)
            idx = xp.arange(X.shape[0])
            rows = X
        else:
            X = data.model_output["last_hidden_state"]
            flat = X.reshape(-1, X.shape[-1])
            idx = xp.asarray(pooled_rows(data, mode))
            rows = flat[idx]
        if mode == "max":
            which = rows.argmax(axis=0)
            Y[i] = rows[which, xp.arange(rows.shape[1])]
            cache.append((X.shape, idx, which))
        else:
            Y[i] = rows.mean(axis=0)
            cache.append((X.shape, idx, None))

    def backprop(dY: Floats2d) -> List[TransformerData]:
        factor = model.attrs["grad_factor"]
        result = []
        for i, data in enumerate(trf_datas):
            if cache[i] is None:
                result.append(TransformerData(wordpieces=data.wordpieces, model_output=ModelOutput(), align=data.align))
                continue
            shape, idx, which = cache[i]
            width = shape[-1]
            d_flat = xp.zeros((int(numpy.prod(shape[:-1])), width), dtype="f")
            if mode == "max":
                d_flat[idx[which], xp.arange(width)] = dY[i]
            else:
                d_flat[idx] += dY[i] / len(idx)
            d_flat *= factor
            key = "pooler_output" if mode == "pooler" else "last_hidden_state"
            result.append(TransformerData(
                wordpieces=data.wordpieces,
                model_output=ModelOutput({key: d_flat.reshape(shape)}),
                align=data.align,
            ))
        return result

    return Y, backprop


def _doc_vectors_forward(model: Model, docs: List[Doc], is_train: bool):
    if not any(len(doc) for doc in docs):  # no encoder outputs at all: nothing tells the width but the listener
        return model.ops.alloc2f(len(docs), known_width(model)), lambda d_vectors: []
    return chain_forward(model, docs, is_train)


@registry.architectures("bertflow.DocPooler.v1")
def DocPooler(
    pooling: str = "cls",
    grad_factor: float = 1.0,
    layers: str = "last",
    n_layers: int = 4,
    upstream: str = "*",
) -> Model[List[Doc], Floats2d]:
    """One vector per doc from the shared encoder, for doc-level heads.

    pooling (str): "cls" (the final [CLS] vector, as the BERT paper describes),
        "pooler" (BERT's pretrained pooler over [CLS], dense + tanh, as the
        original implementation classifies; needs layers = "last"), "mean"
        (masked mean over the doc's wordpieces), "max", or "mean_all" (mean
        over every non-padding position, [CLS] and [SEP] included: what
        sentence-transformers' mean pooling computes).
    grad_factor (float): gradient scale into the encoder; 0 freezes it for this head.
    layers (str) / n_layers (int): layer selection, as in ``bertflow.EncoderListener.v1``.
    upstream (str): name of the encoder component, or "*" for any.
    """
    selected = encoder_output(layers, n_layers, upstream)
    pool = doc_pool(pooling, grad_factor, layers)
    # chain(selected, pool), except that a batch of empty docs gets zero vectors of the right width
    model = Model(f"{selected.name}>>{pool.name}", _doc_vectors_forward, init=chain_init,
                  dims={"nO": None, "nI": None}, layers=[selected, pool])
    model.attrs["layers"] = layers
    model.attrs["n_layers"] = n_layers
    model.set_ref("listener", selected.layers[0])
    return model
