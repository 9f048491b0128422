"""Heads listen to the shared encoder; they never run it themselves.

``BertflowListener`` is spacy-transformers' ``TransformerListener`` (so the
encoder component finds and feeds it) that, when a doc carries no encoder
output (initialization on sample docs, or a disabled encoder), makes zero
outputs with the same keys a real batch would have, hidden states included.
"""
from typing import List, Sequence, Tuple

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from spacy_transformers.layers import TransformerListener
from spacy_transformers.layers.trfs2arrays import forward as trfs2arrays_forward
from thinc.api import Model, Ops, chain, reduce_mean
from thinc.layers.chain import forward as chain_forward, init as chain_init
from thinc.types import Floats2d, Ragged
from transformers.utils import ModelOutput

from bertflow.encoder.extensions import TRF_DATA, get_doc_value
from bertflow.encoder.store import ragged_range, store_groups
from bertflow.errors import BertflowError, Errors
from bertflow.heads.layers import output_width, select_layers


class BertflowListener(TransformerListener):
    name = "bertflow-listener"

    def __init__(self, upstream_name: str = "*", n_layers: int = 1):
        # The same state as TransformerListener.__init__, with our forward.
        Model.__init__(self, name=self.name, forward=_listener_forward, dims={"nO": None},
                       attrs={"n_layers": int(n_layers)})
        self.upstream_name = upstream_name
        self._batch_id = None
        self._outputs = None
        self._backprop = None


def zeros_for(doc: Doc, width: int, n_layers: int, xp=numpy) -> TransformerData:
    """A TransformerData of zeros for ``doc``: one row, one wordpiece per token."""
    length = max(len(doc), 1)
    data = TransformerData.zeros(length, width, xp=xp)
    if n_layers > 1:
        data.model_output["hidden_states"] = [xp.zeros((1, length, width), dtype="f") for _ in range(n_layers)]
    data.model_output["pooler_output"] = xp.zeros((1, width), dtype="f")
    if len(doc) == 0:
        data.align = Ragged(numpy.zeros((0,), dtype="i"), numpy.zeros((0,), dtype="i"))
    return data


def _listener_forward(model: BertflowListener, docs: List[Doc], is_train: bool):
    if is_train and model._batch_id is not None:
        model.verify_inputs(docs)
        _check_width(model, model._outputs)
        return model._outputs, model.backprop_and_clear
    width = model.get_dim("nO") if model.has_dim("nO") else 0
    docs = list(docs)
    outputs = [get_doc_value(doc, TRF_DATA) for doc in docs]
    for i, data in enumerate(outputs):
        if data is None:
            outputs[i] = zeros_for(docs[i], width, model.attrs["n_layers"], xp=model.ops.xp)
    _check_width(model, outputs)
    return outputs, lambda d: []


def _check_width(model: BertflowListener, outputs: List[TransformerData]) -> None:
    """A head's weights fit the width of the encoder it was initialised with;
    other outputs would fail deep inside a matrix product."""
    if model.has_dim("nO") is not True:
        return
    seen = set()  # docs of one store share one width: check the store once
    for data in outputs:
        store = getattr(data, "store", None)
        if store is not None:
            if id(store) in seen:
                continue
            seen.add(id(store))
        hidden = data.model_output.get("last_hidden_state") if data is not None else None
        if hidden is not None and hidden.size and hidden.shape[-1] != model.get_dim("nO"):
            raise BertflowError(Errors.E015.format(expected=model.get_dim("nO"), got=hidden.shape[-1]))


def token_vectors(pooling: Model[Ragged, Floats2d], grad_factor: float = 1.0,
                  ragged: bool = False) -> Model[List[TransformerData], List[Floats2d]]:
    """Per-token vectors from encoder outputs: each token's aligned wordpieces
    reduced by ``pooling``. Docs that are views into one ``OutputStore`` are
    gathered with one index array and pooled in one call per store; other docs
    go through spacy-transformers' ``trfs2arrays`` (the same gather and
    pooling, per doc). Gradients into the encoder are scaled by ``grad_factor``.
    ``ragged``: the output is one ``Ragged`` (every doc's token vectors one
    after another; lengths: tokens per doc) instead of a list of arrays."""
    return Model("token_vectors", _token_forward, layers=[pooling],
                 attrs={"grad_factor": grad_factor, "ragged": ragged})


def _token_forward(model: Model, trf_datas: List[TransformerData], is_train: bool):
    groups = store_groups(trf_datas)
    if groups is None:
        outputs, backprop = trfs2arrays_forward(model, trf_datas, is_train)
        return _as_ragged(model.ops, outputs, backprop) if model.attrs.get("ragged") else (outputs, backprop)
    ops = model.ops
    pooling = model.layers[0]
    lengths = numpy.zeros((len(trf_datas),), dtype="int64")
    pooled_parts, parts = [], []
    for store, D, where in groups:
        src = store.outputs["last_hidden_state"]
        entries, entry_lengths = store.token_entries(D)
        pooled, bp_pooled = pooling(Ragged(src[ops.xp.asarray(entries)], ops.asarray1i(entry_lengths)), is_train)
        lengths[where] = store.n_tokens[D]
        pooled_parts.append(pooled)
        parts.append((store, D, where, src, entries, bp_pooled))
    width = pooled_parts[0].shape[-1] if pooled_parts else 0
    # the batch's token vectors doc after doc: the groups' pooled rows one after another, reordered
    # only when the docs of different stores interleave (one store, the usual case: no copy at all)
    where_all = numpy.concatenate([where for _, _, where, *_ in parts]) if parts else numpy.zeros((0,), dtype="int64")
    reorder = None
    if len(where_all) > 1 and (numpy.diff(where_all) < 0).any():
        cat_lengths = lengths[where_all]
        starts = numpy.cumsum(cat_lengths) - cat_lengths
        order = numpy.argsort(where_all, kind="stable")
        reorder = ragged_range(starts[order], cat_lengths[order])
    if not pooled_parts:
        flat = ops.alloc2f(0, width)
    else:
        flat = pooled_parts[0] if len(pooled_parts) == 1 else ops.xp.concatenate(pooled_parts)
        if reorder is not None:
            flat = flat[ops.xp.asarray(reorder)]
    sizes = [len(p) for p in pooled_parts]

    def backprop_flat(d_flat) -> List[TransformerData]:
        factor = model.attrs["grad_factor"]
        result: List[TransformerData] = [
            TransformerData(wordpieces=data.wordpieces, model_output=ModelOutput(), align=data.align)
            for data in trf_datas]
        if reorder is not None:  # back to the groups' order
            d_cat = ops.alloc2f(*d_flat.shape)
            d_cat[ops.xp.asarray(reorder)] = d_flat
            d_flat = d_cat
        start = 0
        for (store, D, where, src, entries, bp_pooled), size in zip(parts, sizes):
            d_entries = bp_pooled(d_flat[start: start + size]).dataXd
            start += size
            d_src = ops.alloc2f(*src.shape)
            ops.scatter_add(d_src, ops.xp.asarray(entries, dtype="int32"), d_entries * factor)
            docs = [trf_datas[int(i)] for i in where]
            for i, d_data in zip(where, store.doc_gradients(D, "last_hidden_state", d_src, docs)):
                result[int(i)] = d_data
        return result

    if model.attrs.get("ragged"):
        return Ragged(flat, ops.asarray1i(lengths)), lambda d_ragged: backprop_flat(d_ragged.dataXd)

    def backprop(d_outputs: List[Floats2d]) -> List[TransformerData]:
        return backprop_flat(_concat_rows(ops, d_outputs, width))

    return split_rows(flat, lengths), backprop


def split_rows(flat: Floats2d, lengths: Sequence[int]) -> List[Floats2d]:
    """``flat``'s rows cut into consecutive blocks of ``lengths`` rows (views)."""
    ends = numpy.cumsum(numpy.asarray(lengths, dtype="int64")).tolist()
    return [flat[end - n: end] for end, n in zip(ends, numpy.asarray(lengths).tolist())]


def batch_rows(ops: Ops, scores: "Ragged | List[Floats2d]") -> Tuple[Floats2d, numpy.ndarray]:
    """A token-level model's output for a batch as (rows, lengths): every
    doc's rows one after another and the rows per doc, from a ``Ragged``
    (as is, no copy) or a list of per-doc arrays (concatenated)."""
    if isinstance(scores, Ragged):
        return scores.dataXd, numpy.asarray(ops.to_numpy(scores.lengths), dtype="int64")
    scores = list(scores)
    lengths = numpy.asarray([len(s) for s in scores], dtype="int64")
    return _concat_rows(ops, scores, scores[0].shape[-1] if scores else 0), lengths


def same_form(like: "Ragged | List[Floats2d]", flat: Floats2d, lengths: Sequence[int]) -> "Ragged | List[Floats2d]":
    """``flat`` (rows for the docs of ``lengths``) in the form of ``like``: a
    ``Ragged`` when ``like`` is one, else a list of per-doc views (a head's
    gradient goes back in the form its model gave the scores)."""
    if isinstance(like, Ragged):
        return Ragged(flat, like.lengths)
    return split_rows(flat, lengths)


def _concat_rows(ops, arrays: List[Floats2d], width: int) -> Floats2d:
    arrays = [a for a in arrays if len(a)]
    if not arrays:
        return ops.alloc2f(0, width)
    return arrays[0] if len(arrays) == 1 else ops.xp.concatenate(arrays)


def _as_ragged(ops, outputs: List[Floats2d], backprop):
    """A list-of-arrays forward's result as one ``Ragged``, and its backprop taking one."""
    lengths = numpy.asarray([len(x) for x in outputs], dtype="int64")
    width = outputs[0].shape[-1] if outputs else 0
    flat = _concat_rows(ops, outputs, width)
    return Ragged(flat, ops.asarray1i(lengths)), lambda d_ragged: backprop(split_rows(d_ragged.dataXd, lengths))


def _token_vectors_forward(model: Model, docs: List[Doc], is_train: bool):
    if not any(len(doc) for doc in docs):  # nothing to align; spacy-transformers' pooling can't concatenate nothing
        width = known_width(model)
        if model.attrs.get("ragged"):
            return (Ragged(model.ops.alloc2f(0, width), model.ops.asarray1i([0] * len(docs))),
                    lambda d_ragged: [])
        return [model.ops.alloc2f(0, width) for _ in docs], lambda d_arrays: []
    return chain_forward(model, docs, is_train)


def encoder_output(layers: str = "last", n_layers: int = 4, upstream: str = "*") -> Model[List[Doc], List[TransformerData]]:
    """The listener followed by layer selection: ``List[Doc] -> List[TransformerData]``."""
    k = n_layers if layers != "last" else 1
    listener = BertflowListener(upstream, n_layers=k)
    return chain(listener, select_layers(layers, n_layers, encoder=upstream))


@registry.architectures("bertflow.EncoderListener.v1")
def EncoderListener(
    grad_factor: float = 1.0,
    pooling: Model[Ragged, Floats2d] = None,
    layers: str = "last",
    n_layers: int = 4,
    upstream: str = "*",
    ragged: bool = False,
) -> Model[List[Doc], List[Floats2d]]:
    """Per-token vectors from the shared encoder, for token-level heads.

    grad_factor (float): scales the gradient sent into the encoder; 0 freezes
        the encoder for this head (feature-based), 1 fine-tunes it.
    pooling (Model[Ragged, Floats2d]): how a token's wordpieces combine;
        default mean. (``reduce_first`` gives first-wordpiece features.)
    layers (str): "last", "mix" (learned scalar mix of the last ``n_layers``)
        or "concat" (their concatenation; width = n_layers x hidden size).
    n_layers (int): k for "mix"/"concat"; the encoder must keep at least k layers.
    upstream (str): name of the encoder component, or "*" for any.
    ragged (bool): give the batch as one ``Ragged`` (every doc's token vectors
        one after another, lengths = tokens per doc; its backprop takes one too)
        instead of a list of per-doc arrays: a head whose layers run on all rows
        at once (``with_array``) then neither concatenates nor splits them.
    """
    pooling = pooling if pooling is not None else reduce_mean()
    selected = encoder_output(layers, n_layers, upstream)
    to_arrays = token_vectors(pooling, grad_factor, ragged)
    # chain(selected, to_arrays), except that a batch of empty docs gets (0, width) arrays
    model = Model(f"{selected.name}>>{to_arrays.name}", _token_vectors_forward, init=chain_init,
                  dims={"nO": None, "nI": None}, layers=[selected, to_arrays])
    model.attrs["layers"] = layers
    model.attrs["n_layers"] = n_layers
    model.attrs["ragged"] = ragged
    model.set_ref("listener", selected.layers[0])
    return model


def known_width(model: Model) -> int:
    """``listener_width`` once the encoder's width is known (0 before): the
    width of the zero outputs a listener chain gives a batch of empty docs."""
    return listener_width(model) if model.get_ref("listener").has_dim("nO") is True else 0


def listener_width(model: Model) -> int:
    """Output width of a listener chain once the encoder width is known."""
    width = model.get_ref("listener").get_dim("nO")
    return output_width(model.attrs.get("layers", "last"), model.attrs.get("n_layers", 1), width)
