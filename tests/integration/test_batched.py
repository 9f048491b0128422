"""Heads work on a whole batch at once (one gather and one reduction per
store of encoder outputs) and give exactly what they give one doc at a time
or on plain per-doc ``TransformerData``; the glue is vectorised over the
batch with the same results."""
import copy
import pickle

import numpy
import pytest
import spacy
from spacy.training import Example
from spacy_transformers.data_classes import TransformerData
from thinc.api import reduce_first, reduce_mean
from thinc.types import Ragged

from bertflow.encoder.store import DocOutput, store_groups
from bertflow.encoder.alignment import token_alignment, token_alignments
from bertflow.heads import doc_pool
from bertflow.heads.listener import EncoderListener

# short and long docs (the long ones take several windows at window 16), emoji, CJK, odd whitespace
TEXTS = [
    "the cat sat on the mat",
    "John loves Paris and Mary loves London , but neither of them has ever been to Berlin or to Rome "
    "or to any of the other cities that they keep talking about over dinner",
    "ok",
    "emoji 🙂 and 東京 in one  sentence\n",
    "a " * 40 + "end",
    "Mary ran",
]


def plain(data):
    """The same outputs as a plain TransformerData: the per-doc path."""
    return TransformerData(wordpieces=data.wordpieces, model_output=data.model_output, align=data.align)


@pytest.fixture
def encoded(make_nlp):
    nlp = make_nlp(window=16, stride=12, keep_layers=1)
    nlp.initialize()
    docs = list(nlp.pipe(TEXTS, batch_size=4))  # a sort buffer of 6 docs, sub-batches of at most 4
    return nlp, docs


def test_a_sort_buffer_gives_the_heads_one_store(encoded):
    _, docs = encoded
    datas = [doc._.trf_data for doc in docs]
    assert all(isinstance(d, DocOutput) for d in datas)
    groups = store_groups(datas)
    assert len(groups) == 1  # docs from different sub-batches, one store
    store, D, where = groups[0]
    assert sorted(D.tolist()) == list(range(len(docs))) and where.tolist() == list(range(len(docs)))
    # each doc's view is its own rows of the store
    for data in datas:
        hidden = data.model_output["last_hidden_state"]
        flat = store.outputs["last_hidden_state"]
        start = store.pos_start[data.index]
        numpy.testing.assert_array_equal(hidden.reshape(-1, hidden.shape[-1]), flat[start: start + hidden.size // hidden.shape[-1]])
    assert any(data.model_output["last_hidden_state"].shape[0] > 1 for data in datas)  # windows are exercised


@pytest.mark.parametrize("mode", ["cls", "pooler", "mean", "max", "mean_all"])
def test_doc_pooling_batched_equals_per_doc(encoded, mode):
    nlp, docs = encoded
    datas = [doc._.trf_data for doc in docs]
    pool = doc_pool(mode, grad_factor=0.5)
    Y, backprop = pool(datas, is_train=True)
    Y_plain, backprop_plain = pool([plain(d) for d in datas], is_train=True)
    numpy.testing.assert_array_equal(Y, Y_plain)
    for i, data in enumerate(datas):  # and one doc at a time
        numpy.testing.assert_array_equal(pool([data], is_train=False)[0][0], Y[i])
    dY = numpy.random.default_rng(0).normal(size=Y.shape).astype("f")
    for d_batched, d_plain in zip(backprop(dY), backprop_plain(dY)):
        assert d_batched.model_output.keys() == d_plain.model_output.keys()
        for key in d_plain.model_output:
            numpy.testing.assert_array_equal(d_batched.model_output[key], d_plain.model_output[key])


@pytest.mark.parametrize("pooling", [reduce_first, reduce_mean])
def test_token_vectors_batched_equal_per_doc(encoded, pooling):
    nlp, docs = encoded
    listener = EncoderListener(grad_factor=0.5, pooling=pooling())
    to_arrays = listener.layers[1]  # past the listener: List[TransformerData] -> List[Floats2d]
    datas = [doc._.trf_data for doc in docs]
    Ys, backprop = to_arrays(datas, is_train=True)
    Ys_plain, backprop_plain = to_arrays([plain(d) for d in datas], is_train=True)
    assert [len(y) for y in Ys] == [len(doc) for doc in docs]
    for y, y_plain in zip(Ys, Ys_plain):
        numpy.testing.assert_array_equal(y, y_plain)
    rng = numpy.random.default_rng(1)
    dYs = [rng.normal(size=y.shape).astype("f") for y in Ys]
    for d_batched, d_plain in zip(backprop([d.copy() for d in dYs]), backprop_plain([d.copy() for d in dYs])):
        numpy.testing.assert_allclose(d_batched.model_output["last_hidden_state"],
                                      d_plain.model_output["last_hidden_state"], rtol=0, atol=0)


@pytest.mark.parametrize("interleave", [False, True])
def test_ragged_token_vectors_equal_the_list(encoded, interleave):
    """``EncoderListener(ragged=True)`` gives the list's rows as one Ragged (doc
    after doc) and the same gradients, also when the batch's docs come from two
    stores in turn (the rows are put back in doc order)."""
    nlp, docs = encoded
    datas = [doc._.trf_data for doc in docs]
    if interleave:  # a second sort buffer: docs of two stores, alternating
        other = list(nlp.pipe(TEXTS, batch_size=4))
        datas = [d for pair in zip(datas, [doc._.trf_data for doc in other]) for d in pair]
        assert len(store_groups(datas)) == 2
    as_list = EncoderListener(grad_factor=0.5, pooling=reduce_first()).layers[1]
    as_ragged = EncoderListener(grad_factor=0.5, pooling=reduce_first(), ragged=True).layers[1]
    Ys, bp_list = as_list(datas, is_train=True)
    Yr, bp_ragged = as_ragged(datas, is_train=True)
    assert Yr.lengths.tolist() == [len(y) for y in Ys]
    numpy.testing.assert_array_equal(Yr.dataXd, numpy.concatenate(Ys))
    dY = numpy.random.default_rng(2).normal(size=Yr.dataXd.shape).astype("f")
    starts = numpy.cumsum(Yr.lengths) - Yr.lengths
    d_list = bp_list([dY[s: s + n] for s, n in zip(starts, Yr.lengths)])
    d_ragged = bp_ragged(Ragged(dY, Yr.lengths))
    for a, b in zip(d_list, d_ragged):
        numpy.testing.assert_array_equal(a.model_output["last_hidden_state"], b.model_output["last_hidden_state"])


def test_ner_scores_are_one_ragged_and_train_as_the_list(make_nlp):
    """The NER head's model gives the batch as one Ragged; its loss and gradient
    are the same as for the per-doc list a custom model would give."""
    nlp = make_nlp(window=16, stride=12, heads=("bertflow_ner",))
    examples = []
    for text in TEXTS:
        ref = nlp.make_doc(text)
        ref.ents = [ref.char_span(ref[0].idx, ref[0].idx + len(ref[0].text), label="PER")]
        examples.append(Example(nlp.make_doc(text), ref))
    nlp.initialize(lambda: examples)
    docs = list(nlp.pipe(TEXTS))
    head = nlp.get_pipe("bertflow_ner")
    scores = head.model.predict(docs)
    assert isinstance(scores, Ragged) and scores.lengths.tolist() == [len(d) for d in docs]
    loss, d_scores = head.get_loss(examples, scores)
    as_list = [scores.dataXd[s: s + n] for s, n in zip(numpy.cumsum(scores.lengths) - scores.lengths, scores.lengths)]
    loss_list, d_list = head.get_loss(examples, as_list)
    assert loss == pytest.approx(loss_list) and loss > 0
    assert isinstance(d_scores, Ragged) and isinstance(d_list, list)
    numpy.testing.assert_array_equal(d_scores.dataXd, numpy.concatenate(d_list))


def test_one_reduction_per_store_whatever_the_batch_size(encoded, monkeypatch):
    nlp, docs = encoded
    pool = doc_pool("mean")
    calls = []
    reduce = pool.ops.reduce_mean
    monkeypatch.setattr(pool.ops, "reduce_mean", lambda X, lengths: calls.append(len(lengths)) or reduce(X, lengths))
    pool([doc._.trf_data for doc in docs[:2]], is_train=False)
    pool([doc._.trf_data for doc in docs], is_train=False)
    assert calls == [2, len(docs)]  # one call each, however many docs
    pool([plain(doc._.trf_data) for doc in docs], is_train=False)
    assert len(calls) == 2 + len(docs)  # plain per-doc data: one call per doc


def head_outputs(doc):
    return {"cats": dict(doc.cats), "ents": [(e.start, e.end, e.label_) for e in doc.ents],
            "sim": None if doc._.sim_vector is None else doc._.sim_vector.copy()}


def test_pipeline_annotations_batched_equal_one_doc_at_a_time(make_nlp):
    nlp = make_nlp(window=16, stride=12, heads=("bertflow_textcat", "bertflow_ner", "bertflow_similarity"))
    examples = []
    for i, text in enumerate(TEXTS):
        ref = nlp.make_doc(text)
        ref.cats = {"A": float(i % 2), "B": float(1 - i % 2)}
        ref.ents = [ref.char_span(ref[0].idx, ref[0].idx + len(ref[0].text), label="PER")]
        examples.append(Example(nlp.make_doc(text), ref))
    nlp.initialize(lambda: examples)
    batched = [head_outputs(doc) for doc in nlp.pipe(TEXTS, batch_size=4)]
    alone = [head_outputs(nlp(text)) for text in TEXTS]
    for b, a in zip(batched, alone):
        assert b["ents"] == a["ents"]
        assert b["cats"].keys() == a["cats"].keys()
        for label in a["cats"]:  # the classifier's matrix product over 4 rows or 1: the same to float rounding
            assert b["cats"][label] == pytest.approx(a["cats"][label], abs=1e-6)
        numpy.testing.assert_allclose(b["sim"], a["sim"], atol=1e-6)


def test_doc_output_copies_and_pickles_without_the_store(encoded):
    _, docs = encoded
    data = docs[0]._.trf_data
    for other in (copy.deepcopy(data), pickle.loads(pickle.dumps(data))):
        assert type(other) is TransformerData
        numpy.testing.assert_array_equal(other.model_output["last_hidden_state"], data.model_output["last_hidden_state"])
    assert "store" not in repr(data) and repr(data).startswith("TransformerData(")
    copied = docs[0].copy()  # a doc copy does not drag the whole batch's outputs along
    assert getattr(copied._.trf_data, "store", None) is None


def test_token_alignments_batched_equal_one_doc_at_a_time(make_nlp):
    nlp = make_nlp()
    nlp.initialize()
    encoder = nlp.get_pipe("encoder")
    texts = TEXTS + ["  leading and trailing  ", "\u200b zero width", "x"]
    docs = [nlp.make_doc(t) for t in texts]
    tokenized = encoder.tokenize(docs)
    together = token_alignments(docs, [t.offsets for t in tokenized])
    for doc, tok, (wp, lengths) in zip(docs, tokenized, together):
        wp_alone, lengths_alone = token_alignment(doc, tok.offsets)
        numpy.testing.assert_array_equal(wp, wp_alone)
        numpy.testing.assert_array_equal(lengths, lengths_alone)
        assert len(lengths) == len(doc) and (lengths > 0).all()  # every token has a wordpiece
        assert ((wp >= 0) & (wp < len(tok.ids))).all()


@pytest.mark.parametrize("wordpieces", ["first", "mean"])
def test_qa_features_batched_equal_per_doc(make_nlp, wordpieces):
    from bertflow_qa.architectures import qa_features

    nlp = make_nlp(window=24, stride=16)
    nlp.initialize()
    docs = [nlp.make_doc(text) for text in TEXTS]
    for i, doc in enumerate(docs):
        doc._.text_pair = "who went where ?" if i % 2 else "what"
    docs = list(nlp.pipe(docs, batch_size=4))
    features = qa_features(wordpieces, grad_factor=0.5)
    datas = [doc._.trf_data for doc in docs]
    Ys, backprop = features(datas, is_train=True)
    Ys_plain, backprop_plain = features([plain(d) for d in datas], is_train=True)
    for doc, y, y_plain in zip(docs, Ys, Ys_plain):
        assert y.shape == (1 + len(doc), y.shape[1])
        numpy.testing.assert_array_equal(y, y_plain)
    rng = numpy.random.default_rng(2)
    dYs = [rng.normal(size=y.shape).astype("f") for y in Ys]
    for d_batched, d_plain in zip(backprop(dYs), backprop_plain(dYs)):
        numpy.testing.assert_array_equal(d_batched.model_output["last_hidden_state"],
                                         d_plain.model_output["last_hidden_state"])


def test_ner_decoding_argmax_shortcut_equals_full_viterbi():
    from bertflow_ner.decoding import _viterbi, make_tags, transitions, viterbi_ragged

    tags = make_tags(["PER", "LOC"], "BIO")
    start, allowed, end = transitions(tags, "BIO")
    rng = numpy.random.default_rng(3)
    lengths = rng.integers(1, 12, size=40)
    log_p = numpy.log(rng.dirichlet(numpy.ones(len(tags)), size=int(lengths.sum())))
    log_p[: lengths[0], 0] += 5.0  # the first doc's argmax path is all O: valid, taken as it is
    best = viterbi_ragged(log_p, lengths, start, allowed, end)
    numpy.testing.assert_array_equal(best, _viterbi(log_p, lengths, start, allowed, end))
    bounds = numpy.cumsum(lengths)
    for b, n in zip(bounds, lengths):  # every path valid
        path = best[b - n: b]
        assert start[path[0]] and end[path[-1]] and all(allowed[x, y] for x, y in zip(path[:-1], path[1:]))
