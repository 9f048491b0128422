"""The head building blocks: pooling, layer selection, classifier, masked losses."""
import numpy
import pytest
from spacy_transformers.data_classes import TransformerData
from thinc.api import Ragged
from transformers.file_utils import ModelOutput

from bertflow.errors import BertflowError
from bertflow.heads import (Classifier, binary_cross_entropy, doc_pool, mean_squared_error,
                            select_layers, softmax_cross_entropy)

rng = numpy.random.default_rng(0)


def fake_data(rows=2, seq=5, width=3, layers=3, align=((1,), (2, 3), (6,))):
    hidden = [rng.normal(size=(rows, seq, width)).astype("f") for _ in range(layers)]
    lengths = numpy.asarray([len(a) for a in align], dtype="i")
    data = numpy.asarray([i for a in align for i in a], dtype="i")
    out = ModelOutput(last_hidden_state=hidden[-1], hidden_states=hidden,
                      pooler_output=rng.normal(size=(rows, width)).astype("f"))
    return TransformerData(wordpieces=None, model_output=out, align=Ragged(data, lengths))


@pytest.mark.parametrize("mode", ["cls", "pooler", "mean", "max"])
def test_pooling_values(mode):
    data = fake_data()
    Y, _ = doc_pool(mode)([data], is_train=False)
    flat = data.model_output["last_hidden_state"].reshape(-1, 3)
    if mode == "pooler":
        expected = data.model_output["pooler_output"].mean(0)  # one pooler row per window
    elif mode == "cls":
        expected = flat[[0, 5]].mean(0)   # the [CLS] of each of the 2 rows
    elif mode == "mean":
        expected = flat[[1, 2, 3, 6]].mean(0)  # each doc wordpiece once
    else:
        expected = flat[[1, 2, 3, 6]].max(0)
    numpy.testing.assert_allclose(Y[0], expected, rtol=1e-6)


def test_pooling_unknown_mode_error():
    with pytest.raises(BertflowError, match="Unknown pooling 'sum'"):
        doc_pool("sum")
    with pytest.raises(BertflowError, match="pooling = 'pooler' needs the encoder's pooler output"):
        doc_pool("pooler", layers="mix")


def numeric_grad(f, x, eps=1e-3):
    g = numpy.zeros_like(x)
    it = numpy.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("mode", ["cls", "pooler", "mean", "max"])
def test_pooling_gradient(mode):
    data = fake_data()
    layer = doc_pool(mode)
    w = rng.normal(size=(1, 3)).astype("f")
    key = "pooler_output" if mode == "pooler" else "last_hidden_state"
    X = data.model_output[key]

    def loss():
        Y, _ = layer([data], is_train=True)
        return float((Y * w).sum())

    _, bp = layer([data], is_train=True)
    analytic = bp(w)[0].model_output[key]
    X64 = X  # modified in place by numeric_grad
    numpy.testing.assert_allclose(analytic, numeric_grad(loss, X64), atol=2e-2)


@pytest.mark.parametrize("mode", ["mix", "concat"])
def test_select_layers_values_and_gradient(mode):
    data = fake_data(layers=3)
    layer = select_layers(mode, n_layers=2)
    layer.initialize()
    (out,), bp = layer([data], is_train=True)
    hs = data.model_output["hidden_states"]
    if mode == "concat":
        numpy.testing.assert_allclose(out.model_output["last_hidden_state"], numpy.concatenate(hs[-2:], -1))
    else:
        numpy.testing.assert_allclose(out.model_output["last_hidden_state"], (hs[-2] + hs[-1]) / 2, rtol=1e-5)
    width = out.model_output["last_hidden_state"].shape[-1]
    w = rng.normal(size=out.model_output["last_hidden_state"].shape).astype("f")
    d = TransformerData(wordpieces=None, model_output=ModelOutput(last_hidden_state=w), align=data.align)
    grads = bp([d])[0].model_output["hidden_states"]
    assert len(grads) == 3 and not grads[0].any()  # one per kept layer, the unused one zero

    def loss():
        (o,), _ = layer([data], is_train=False)
        return float((o.model_output["last_hidden_state"] * w).sum())

    numpy.testing.assert_allclose(grads[-1], numeric_grad(loss, hs[-1]), atol=2e-2)
    assert width == (6 if mode == "concat" else 3)


def test_select_layers_unknown_mode():
    with pytest.raises(BertflowError, match="Unknown layer mode 'sum'"):
        select_layers("sum")


def test_losses_mask_rows_and_nan_labels():
    probs = numpy.asarray([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]], dtype="f")
    truths = numpy.asarray([[1, 0], [0, 1], [1, 0]], dtype="f")
    mask = numpy.asarray([1, 1, 0], dtype="f")
    loss, d = softmax_cross_entropy(probs, truths, mask)
    assert not d[2].any()
    assert loss == pytest.approx(-(numpy.log(0.7) + numpy.log(0.8)) / 2, rel=1e-5)
    truths_nan = numpy.asarray([[1, numpy.nan], [0, 1], [1, 0]], dtype="f")
    loss_b, d_b = binary_cross_entropy(probs, truths_nan, mask)
    assert d_b[0, 1] == 0 and d_b[0, 0] != 0 and not d_b[2].any()
    loss_m, d_m = mean_squared_error(probs[:, :1], numpy.asarray([[1.0], [numpy.nan], [0.0]], dtype="f"))
    assert loss_m == pytest.approx(((0.7 - 1) ** 2 + 0.25) / 2, rel=1e-5) and d_m[1, 0] == 0


@pytest.mark.parametrize("activation", ["softmax", "sigmoid", "linear"])
def test_classifier_activations(activation):
    model = Classifier(nO=3, nI=4, dropout=0.0, activation=activation)
    model.initialize()
    X = rng.normal(size=(5, 4)).astype("f")
    Y = model.predict(X)
    assert Y.shape == (5, 3)
    if activation == "softmax":
        numpy.testing.assert_allclose(Y.sum(1), 1, rtol=1e-5)
    elif activation == "sigmoid":
        assert ((Y > 0) & (Y < 1)).all()
    with pytest.raises(BertflowError, match="Unknown activation"):
        Classifier(activation="relu")


@pytest.mark.parametrize("activation", ["softmax", "sigmoid", "linear"])
def test_classifier_matches_thincs_layers_and_loads_their_weights(activation):
    """The output layer computes its products in torch, not thinc's blis gemm:
    the same outputs and gradients as thinc's Softmax / Linear, and a
    classifier saved with thinc's layers (pipelines trained before) loads."""
    from functools import partial

    from thinc.api import Dropout, Linear, Softmax, chain, zero_init

    from bertflow.heads.classifier import bert_normal_init, sigmoid_output

    init = dict(init_W=partial(bert_normal_init, std=0.5), init_b=zero_init)
    out = {"softmax": lambda: Softmax(3, 4, **init), "linear": lambda: Linear(3, 4, **init),
           "sigmoid": lambda: chain(Linear(3, 4, **init), sigmoid_output())}[activation]()
    thincs = chain(Dropout(0.0), out)
    thincs.initialize()
    ours = Classifier(nO=3, nI=4, dropout=0.0, activation=activation)
    ours.initialize()
    ours.from_bytes(thincs.to_bytes())  # the old structure's weights, by node and parameter name
    X = rng.normal(size=(6, 4)).astype("f")
    Y_old, bp_old = thincs.begin_update(X)
    Y_new, bp_new = ours.begin_update(X)
    numpy.testing.assert_allclose(Y_new, Y_old, rtol=1e-5, atol=1e-6)
    dY = rng.normal(size=Y_old.shape).astype("f")
    numpy.testing.assert_allclose(bp_new(dY), bp_old(dY), rtol=1e-5, atol=1e-6)
    old_layer = thincs.layers[1] if activation != "sigmoid" else thincs.layers[1].layers[0]
    for name in ("W", "b"):
        numpy.testing.assert_allclose(ours.get_ref("output_layer").get_grad(name), old_layer.get_grad(name),
                                      rtol=1e-5, atol=1e-6)
    # and back: what we save loads into thinc's layers
    thincs.from_bytes(ours.to_bytes())
    numpy.testing.assert_allclose(thincs.predict(X), ours.predict(X), rtol=1e-5, atol=1e-6)
