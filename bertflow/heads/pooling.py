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

from bertflow.encoder.store import has_output, ragged_range, store_groups
from bertflow.errors import BertflowError, Errors
from bertflow.heads.listener import encoder_output, known_width

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
        return ragged_range(numpy.arange(n_rows) * seq_len, lengths)
    return numpy.unique(numpy.asarray(data.align.dataXd))


def _pool_forward(model: Model, trf_datas: List[TransformerData], is_train: bool):
    """Batched: the docs that are views into one ``OutputStore`` are pooled
    with one gather and one segment reduction per store; any other doc on
    its own, with the same reduction (so both paths give the same numbers)."""
    mode = model.attrs["mode"]
    ops = model.ops
    key = "pooler_output" if mode == "pooler" else "last_hidden_state"
    live = [i for i, data in enumerate(trf_datas) if has_output(data)]
    if mode == "pooler" and any("pooler_output" not in trf_datas[i].model_output for i in live):
        raise BertflowError(Errors.E014.format(layers=model.attrs["layers"]))
    width = trf_datas[live[0]].model_output["last_hidden_state"].shape[-1] if live else 0
    groups = store_groups(trf_datas)
    if groups is None:  # per doc: each its own group, indices into its own outputs
        groups = [(None, None, i) for i in live]
    Y = ops.alloc2f(len(trf_datas), width)
    parts = []
    for store, D, where in groups:
        if store is None:
            data = trf_datas[where]
            X = data.model_output[key]
            src = X if mode == "pooler" else X.reshape(-1, X.shape[-1])
            idx = numpy.arange(X.shape[0]) if mode == "pooler" else pooled_rows(data, mode)
            lengths = numpy.asarray([len(idx)])
            where = numpy.asarray([where])
        else:
            src = store.outputs[key]
            idx, lengths = store.pooled(mode, D)
        rows = src[ops.xp.asarray(idx)]
        lengths = ops.asarray1i(lengths)
        if mode == "max":
            pooled, which = ops.reduce_max(rows, lengths)
        else:
            pooled, which = ops.reduce_mean(rows, lengths), None
        Y[ops.xp.asarray(where)] = pooled
        parts.append((store, where, src, idx, lengths, which))

    def backprop(dY: Floats2d) -> List[TransformerData]:
        factor = model.attrs["grad_factor"]
        result: List[TransformerData] = [
            TransformerData(wordpieces=data.wordpieces, model_output=ModelOutput(), align=data.align)
            for data in trf_datas]
        for store, where, src, idx, lengths, which in parts:
            d_pooled = dY[ops.xp.asarray(where)]
            if mode == "max":
                d_rows = ops.backprop_reduce_max(d_pooled, which, lengths)
            else:
                d_rows = ops.backprop_reduce_mean(d_pooled, lengths)
            d_src = ops.alloc2f(*src.shape)
            ops.scatter_add(d_src, ops.xp.asarray(idx, dtype="int32"), d_rows * factor)
            if store is None:
                data = trf_datas[int(where[0])]
                shape = data.model_output[key].shape
                result[int(where[0])] = TransformerData(wordpieces=data.wordpieces, align=data.align,
                                                        model_output=ModelOutput({key: d_src.reshape(shape)}))
            else:
                docs = [trf_datas[int(i)] for i in where]
                D = numpy.asarray([data.index for data in docs])
                for i, d_data in zip(where, store.doc_gradients(D, key, d_src, docs)):
                    result[int(i)] = d_data
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
    model.set_ref("pool", pool)
    return model
