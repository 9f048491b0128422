"""``bertflow.QAHead.v1``: start/end logits over [CLS] and the context's tokens.

The encoder lays ``(question, context)`` out as ``[CLS] question [SEP]
window [SEP]`` rows, with the question in every window of a long context.
Each context token takes its vector from the window where it sits most
centrally (BERT's "max context" rule), so a span is scored once, with the
most context on both sides. Row 0 of each doc's output is [CLS] (averaged
over the doc's windows): its start+end logits are the no-answer score.
"""
from typing import List

import numpy

from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from thinc.api import Model, chain, with_array
from thinc.types import Floats2d
from transformers.utils import ModelOutput

from bertflow.api import BertflowError, Classifier, encoder_output, ragged_range, store_groups

from .errors import Errors

WORDPIECES = ("first", "mean")


@registry.architectures("bertflow.QAHead.v1")
def QAHead(
    wordpieces: str = "first",
    dropout: float = 0.1,
    layers: str = "last",
    n_layers: int = 4,
    grad_factor: float = 1.0,
    upstream: str = "*",
) -> Model[List[Doc], List[Floats2d]]:
    """Per doc, a ``(1 + n_tokens, 2)`` array: start and end logits of [CLS]
    (row 0, the no-answer position) and of each context token.

    wordpieces (str): a token's vector is its "first" wordpiece's (default) or
        the "mean" of its wordpieces.
    dropout (float): on the vectors before the output layer; default 0.1.
    layers / n_layers (str / int): "last", "mix" or "concat" of the last k layers.
    grad_factor (float): gradient scale into the encoder (0 freezes it).
    upstream (str): name of the encoder component, or "*" for any.
    """
    if wordpieces not in WORDPIECES:
        raise BertflowError(Errors.QA007.format(wordpieces=wordpieces))
    selected = encoder_output(layers, n_layers, upstream)
    features = qa_features(wordpieces, grad_factor)
    classifier = Classifier(nO=2, dropout=dropout, activation="linear")
    model = chain(selected, features, with_array(classifier))
    model.set_ref("output_layer", classifier.get_ref("output_layer"))
    return model


def qa_features(wordpieces: str, grad_factor: float) -> Model[List[TransformerData], List[Floats2d]]:
    """[CLS] then one vector per token, gathered from the encoder's output."""
    return Model("qa_features", _features_forward, init=_features_init, dims={"nO": None},
                 attrs={"wordpieces": wordpieces, "grad_factor": grad_factor})


def _width(trf_datas: List[TransformerData]) -> int:
    for data in trf_datas:
        if "last_hidden_state" in data.model_output:
            return int(data.model_output["last_hidden_state"].shape[-1])
    return 0


def _features_init(model: Model, X: List[TransformerData] = None, Y=None) -> None:
    if X is not None and _width(X):
        model.set_dim("nO", _width(X), force=True)


def _gather_plan(model: Model, data: TransformerData):
    """Output rows, and (source flat index, destination row, weight) of every
    vector gathered: each window's [CLS] into row 0 (averaged), then each
    token's first (or every, averaged) wordpiece into row 1 + token."""
    X = data.model_output["last_hidden_state"]
    n_rows, seq_len = X.shape[:2]
    lengths = numpy.asarray(model.ops.to_numpy(data.align.lengths), dtype="int64")
    flat_idx = numpy.asarray(model.ops.to_numpy(data.align.dataXd), dtype="int64").reshape(-1)
    src_cls = numpy.arange(n_rows, dtype="int64") * seq_len
    if model.attrs["wordpieces"] == "first":
        has = lengths > 0
        src_tok = flat_idx[(lengths.cumsum() - lengths)[has]]
        dst_tok = 1 + numpy.nonzero(has)[0]
        w_tok = numpy.ones((len(src_tok),), dtype="f")
    else:
        src_tok = flat_idx
        dst_tok = 1 + numpy.repeat(numpy.arange(len(lengths)), lengths)
        w_tok = numpy.repeat(1.0 / numpy.maximum(lengths, 1), lengths)
    xp = model.ops.xp
    src = xp.asarray(numpy.concatenate([src_cls, src_tok]))
    dst = xp.asarray(numpy.concatenate([numpy.zeros((n_rows,), dtype="int64"), dst_tok]))
    w = xp.asarray(numpy.concatenate([numpy.full((n_rows,), 1.0 / n_rows), w_tok]).astype("f"))
    return 1 + len(lengths), src, dst, w


def _features_forward(model: Model, trf_datas: List[TransformerData], is_train: bool):
    """Docs that are views into one ``OutputStore`` (``bertflow.api.store_groups``)
    are gathered and scattered with one plan per store; any other doc with
    its own plan. Both give the same numbers."""
    width = _width(trf_datas) or model.get_dim("nO")
    ops = model.ops
    outputs = [ops.alloc2f(1, width) for _ in trf_datas]  # a doc without tokens: [CLS] only, at zero
    plans = []
    groups = store_groups(trf_datas)
    if groups is None:
        groups = [(None, None, numpy.asarray([i])) for i, data in enumerate(trf_datas)
                  if "last_hidden_state" in data.model_output]
    for store, D, where in groups:
        if store is None:
            data = trf_datas[int(where[0])]
            n_out, src, dst, w = _gather_plan(model, data)
            flat = data.model_output["last_hidden_state"].reshape(-1, width)
            sizes = numpy.asarray([n_out])
        else:
            flat = store.outputs["last_hidden_state"]
            sizes, src, dst, w = _store_plan(model, store, D)
        Y = ops.alloc2f(int(sizes.sum()), width)
        ops.scatter_add(Y, dst, flat[src] * w[:, None])
        bounds = numpy.cumsum(sizes)
        for i, end, n in zip(where, bounds, sizes):
            outputs[int(i)] = Y[int(end - n): int(end)]
        plans.append((store, D, where, flat.shape, src, dst, w))

    def backprop(dYs: List[Floats2d]) -> List[TransformerData]:
        factor = model.attrs["grad_factor"]
        result = [TransformerData(wordpieces=data.wordpieces, model_output=ModelOutput(), align=data.align)
                  for data in trf_datas]
        for store, D, where, shape, src, dst, w in plans:
            dY = ops.xp.concatenate([dYs[int(i)] for i in where]) if len(where) > 1 else dYs[int(where[0])]
            d_flat = ops.alloc2f(*shape)
            ops.scatter_add(d_flat, src, dY[dst] * (w[:, None] * factor))
            if store is None:
                data = trf_datas[int(where[0])]
                X = data.model_output["last_hidden_state"]
                result[int(where[0])] = TransformerData(wordpieces=data.wordpieces, align=data.align,
                                                        model_output=ModelOutput(last_hidden_state=d_flat.reshape(X.shape)))
            else:
                docs = [trf_datas[int(i)] for i in where]
                for i, d_data in zip(where, store.doc_gradients(D, "last_hidden_state", d_flat, docs)):
                    result[int(i)] = d_data
        return result

    return outputs, backprop


def _store_plan(model: Model, store, D: numpy.ndarray):
    """``_gather_plan`` for the docs ``D`` of a store at once: each doc's
    output rows (1 + its tokens), and the (source position, destination row,
    weight) of every vector gathered, destination rows counted over all docs."""
    n_tok = store.n_tokens[D]
    sizes = 1 + n_tok
    base = numpy.cumsum(sizes) - sizes  # each doc's row 0
    rows = ragged_range(store.row_start[D], store.n_rows[D])
    src_cls = store.row_pos[rows]
    dst_cls = numpy.repeat(base, store.n_rows[D])
    w_cls = numpy.repeat(1.0 / store.n_rows[D], store.n_rows[D])
    entries, lengths = store.token_entries(D)
    dst_tok = ragged_range(base + 1, n_tok)
    if model.attrs["wordpieces"] == "first":
        has = lengths > 0
        src_tok = entries[(lengths.cumsum() - lengths)[has]]
        dst_tok = dst_tok[has]
        w_tok = numpy.ones((len(src_tok),))
    else:
        src_tok = entries
        dst_tok = numpy.repeat(dst_tok, lengths)
        w_tok = numpy.repeat(1.0 / numpy.maximum(lengths, 1), lengths)
    xp = model.ops.xp
    # per doc: its [CLS] rows, then its tokens, as _gather_plan orders them (the same order of additions)
    order = numpy.argsort(numpy.concatenate([dst_cls, dst_tok]), kind="stable")
    src = numpy.concatenate([src_cls, src_tok])[order]
    dst = numpy.concatenate([dst_cls, dst_tok])[order]
    w = numpy.concatenate([w_cls, w_tok])[order].astype("f")
    return sizes, xp.asarray(src), xp.asarray(dst), xp.asarray(w)
