import itertools
import json

import numpy
import pytest
import spacy
from hypothesis import given, settings, strategies as st
from spacy.tokens import Doc, Span
from spacy.training import Example
from thinc.api import Adam

from bertflow.api import BertflowError, tiny_encoder_config
from bertflow_ner.convert import convert, iob_spans
from bertflow_ner.decoding import make_tags, transitions, viterbi, viterbi_batch

SENTS = [
    ("john lives in paris", [(0, 1, "PER"), (3, 4, "LOC")]),
    ("mary ran to london", [(0, 1, "PER"), (3, 4, "LOC")]),
    ("apple was founded in new york", [(0, 1, "ORG"), (4, 6, "LOC")]),
    ("google is a company", [(0, 1, "ORG")]),
    ("the cat sat on the mat", []),
    ("steve jobs founded apple", [(0, 2, "PER"), (3, 4, "ORG")]),
]


def make_pipeline(tiny_bert_dir, scheme="BIO", window=256, stride=192, **model):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir, window, stride))
    nlp.add_pipe("bertflow_ner", name="ner", config={"scheme": scheme, "model": {"dropout": 0.0, **model}})
    return nlp


def examples(nlp, sents=SENTS):
    egs = []
    for text, ents in sents:
        ref = Doc(nlp.vocab, words=text.split())
        ref.set_ents([Span(ref, s, e, label=lab) for s, e, lab in ents], default="outside")
        egs.append(Example(Doc(nlp.vocab, words=text.split()), ref))
    return egs


def train(nlp, egs, steps=60, lr=5e-3):
    nlp.initialize(lambda: egs)
    optimizer = Adam(lr)
    return [nlp.update(egs, sgd=optimizer)["ner"] for _ in range(steps)]


@pytest.mark.slow
@pytest.mark.parametrize("scheme,wordpieces", [("BIO", "first"), ("BILUO", "mean")])
def test_ner_learns_toy_task(tiny_bert_dir, scheme, wordpieces):
    nlp = make_pipeline(tiny_bert_dir, scheme=scheme, wordpieces=wordpieces)
    egs = examples(nlp)
    losses = train(nlp, egs)
    assert losses[-1] < losses[0] * 0.1
    for eg in egs:
        doc = nlp(Doc(nlp.vocab, words=[t.text for t in eg.reference]))
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [(e.start, e.end, e.label_) for e in eg.reference.ents]
    scores = nlp.evaluate(egs)
    assert scores["ents_f"] == 1.0 and scores["ents_per_type"]["LOC"]["f"] == 1.0


def test_ner_feature_based_concat_frozen(tiny_bert_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir, keep_layers=2))
    nlp.add_pipe("bertflow_ner", name="ner", config={"model": {"layers": "concat", "n_layers": 2,
                                                               "grad_factor": 0.0, "dropout": 0.0}})
    egs = examples(nlp)
    emb = None
    nlp.initialize(lambda: egs)
    emb = nlp.get_pipe("encoder").model.transformer.embeddings.word_embeddings.weight.detach().clone()
    optimizer = Adam(5e-3)
    losses = [nlp.update(egs, sgd=optimizer)["ner"] for _ in range(30)]
    assert losses[-1] < losses[0]
    assert numpy.allclose(emb.numpy(), nlp.get_pipe("encoder").model.transformer.embeddings.word_embeddings.weight.detach().numpy())


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_ner_decoding_never_invalid(scheme, data):
    tags = make_tags(["PER", "LOC", "ORG"], scheme)
    n = data.draw(st.integers(0, 12))
    log_p = numpy.asarray(data.draw(st.lists(st.lists(st.floats(-20, 0), min_size=len(tags), max_size=len(tags)),
                                             min_size=n, max_size=n)), dtype="f").reshape(n, len(tags))
    path = [tags[i] for i in viterbi(log_p, *transitions(tags, scheme))]
    prev = "O"
    for tag in path:
        if tag[0] in "IL":  # never I-/L- without a matching open entity
            assert prev[0] in "BI" and prev[2:] == tag[2:], path
        if scheme == "BILUO" and prev[0] in "BI":
            assert tag[0] in "IL" and tag[2:] == prev[2:], path
        prev = tag
    if scheme == "BILUO" and path:
        assert path[-1][0] in "OLU"


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_ner_batched_decoding_is_the_best_valid_path_per_doc(scheme):
    """Docs of different lengths decoded together: each gets the path an
    exhaustive search over valid sequences finds for it alone."""
    tags = make_tags(["PER", "LOC"], scheme)
    start, allowed, end = transitions(tags, scheme)
    rng = numpy.random.default_rng(0)
    log_ps = [numpy.log(rng.dirichlet(numpy.ones(len(tags)), size=n)).astype("f") for n in (3, 0, 1, 4, 2, 4)]
    paths = viterbi_batch(log_ps, start, allowed, end)
    for log_p, path in zip(log_ps, paths):
        n = len(log_p)
        valid = [seq for seq in itertools.product(range(len(tags)), repeat=n)
                 if not n or (start[seq[0]] and end[seq[-1]] and all(allowed[a, b] for a, b in zip(seq, seq[1:])))]
        best = max(valid, key=lambda seq: sum(float(log_p[i, t]) for i, t in enumerate(seq)))
        assert path == list(best) == viterbi(log_p, start, allowed, end)


def test_ner_decoding_prefers_valid_over_argmax():
    tags = make_tags(["PER"], "BIO")  # O, B-PER, I-PER
    log_p = numpy.log(numpy.asarray([[0.4, 0.1, 0.5], [0.1, 0.1, 0.8]], dtype="f"))
    path = [tags[i] for i in viterbi(log_p, *transitions(tags, "BIO"))]
    assert path in (["B-PER", "I-PER"], ["O", "O"]) and path[0] != "I-PER"


@pytest.mark.slow
def test_ner_long_doc_gets_entities_in_last_part(tiny_bert_dir):
    nlp = make_pipeline(tiny_bert_dir, window=32, stride=24)
    egs = examples(nlp)
    train(nlp, egs, steps=60)
    filler = "the cat sat on the mat . " * 290  # 2,030 tokens of no entities
    doc = nlp(filler + "john lives in paris")
    assert len(doc) > 2000 and doc._.trf_windows["n_windows"] > 50
    ents = [(e.text, e.label_) for e in doc.ents if e.start > 1900]
    assert ("john", "PER") in ents and ("paris", "LOC") in ents


def test_ner_unannotated_docs_give_no_loss_but_empty_annotated_do(tiny_bert_dir):
    nlp = make_pipeline(tiny_bert_dir)
    egs = examples(nlp)
    nlp.initialize(lambda: egs)
    head = nlp.get_pipe("ner")
    missing = Example(Doc(nlp.vocab, words=["john", "ran"]), Doc(nlp.vocab, words=["john", "ran"]))
    assert numpy.isnan(head._gold(missing)).all()
    empty = examples(nlp, [("john ran", [])])[0]
    gold = head._gold(empty)
    assert not numpy.isnan(gold).any() and (gold[:, 0] == 1).all()  # all O: a real negative


def test_ner_unknown_label_error(tiny_bert_dir):
    nlp = make_pipeline(tiny_bert_dir)
    nlp.initialize(lambda: examples(nlp))
    bad = examples(nlp, [("john ran", [(0, 1, "ANIMAL")])])
    with pytest.raises(BertflowError, match="Unknown entity label 'ANIMAL'"):
        nlp.update(bad)


CASED = [("we like Apple", [(2, 3, "ORG")]), ("we like apple", []), ("they sold Apple", [(2, 3, "ORG")]),
         ("they sold apple", []), ("Apple sold apple", [(0, 1, "ORG")])]


@pytest.mark.slow
@pytest.mark.parametrize("case_features", [False, True])
def test_ner_case_features_separate_what_an_uncased_encoder_cannot(tiny_bert_dir, tmp_path, case_features):
    """The tiny encoder lowercases, as minilm-l6 does: "Apple" and "apple" reach
    the head as the same vector, so only case_features can tell the company
    from the fruit; the features survive saving and loading."""
    from bertflow_ner.architectures import token_case

    nlp = make_pipeline(tiny_bert_dir, case_features=case_features)
    egs = examples(nlp, CASED)
    train(nlp, egs, steps=80)
    found = [[(e.start, e.end, e.label_) for e in nlp(Doc(nlp.vocab, words=t.split())).ents] for t, _ in CASED]
    gold = [[(s, e, lab) for s, e, lab in ents] for _, ents in CASED]
    if case_features:
        assert found == gold
        nlp.to_disk(tmp_path / "cased")
        loaded = spacy.load(tmp_path / "cased")
        assert [[(e.start, e.end, e.label_) for e in loaded(Doc(loaded.vocab, words=t.split())).ents]
                for t, _ in CASED] == gold
    else:  # the same input twice: the two sentences of each pair get the same tags
        assert found[0] == found[1] and found[2] == found[3] and found != gold
    feats = token_case().predict([Doc(nlp.vocab, words=["Apple", "APPLE", "apple", "1976", ","])])[0]
    numpy.testing.assert_array_equal(feats, [[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0],
                                             [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]])


def test_ner_serialization_roundtrip(tiny_bert_dir, tmp_path):
    nlp = make_pipeline(tiny_bert_dir)
    train(nlp, examples(nlp), steps=10)
    texts = [t for t, _ in SENTS]
    before = [[(e.start, e.end, e.label_) for e in nlp(t).ents] for t in texts]
    nlp.to_disk(tmp_path / "ner")
    loaded = spacy.load(tmp_path / "ner")
    assert loaded.get_pipe("ner").labels == ("LOC", "ORG", "PER")
    assert [[(e.start, e.end, e.label_) for e in loaded(t).ents] for t in texts] == before
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in loaded.pipe(texts)] == before


def test_ner_iob1_and_iob2():
    assert iob_spans(["I-PER", "I-PER", "O", "I-LOC"]) == [(0, 2, "PER"), (3, 4, "LOC")]
    assert iob_spans(["B-PER", "I-PER", "B-PER", "I-LOC"]) == [(0, 2, "PER"), (2, 3, "PER"), (3, 4, "LOC")]


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_set_annotations_writes_what_spacys_tag_readers_read(tiny_bert_dir, scheme):
    """predict's tag indices, written by set_annotations (one Doc.from_array per doc), give the docs the
    entity state that spaCy's own readers of the same tags give them (biluo_tags_to_spans + set_ents),
    token by token; entities already on a doc are replaced."""
    from spacy.training import biluo_tags_to_spans, iob_to_biluo
    from thinc.types import Ragged

    nlp = make_pipeline(tiny_bert_dir, scheme=scheme)
    nlp.initialize(lambda: examples(nlp))
    ner = nlp.get_pipe("ner")
    tags = ner.tags
    start, allowed, end = transitions(tags, scheme)
    rng = numpy.random.default_rng(0)
    lengths = [0, 1, 2, 5, 9, 17] * 5
    # valid random sequences: constrained Viterbi over random scores
    paths = viterbi_batch([numpy.log(rng.dirichlet(numpy.ones(len(tags)) * 0.3, n)) for n in lengths],
                          start, allowed, end)
    words = [[f"w{i}" for i in range(n)] for n in lengths]
    ours = [Doc(nlp.vocab, words=w) for w in words]
    for doc in ours:  # entities from before, to be replaced
        if len(doc):
            doc.set_ents([Span(doc, 0, 1, label="STALE", kb_id="Q1")], default="outside")
    predicted = Ragged(numpy.asarray([i for p in paths for i in p], dtype="int64"),
                       numpy.asarray(lengths, dtype="int32"))
    ner.set_annotations(ours, predicted)
    names = ner.tag_names(predicted)
    assert names == [[tags[i] for i in p] for p in paths]
    n_ents = 0
    for doc, w, tag_seq in zip(ours, words, names):
        ref = Doc(nlp.vocab, words=w)
        ref.set_ents(biluo_tags_to_spans(ref, iob_to_biluo(tag_seq) if scheme == "BIO" else tag_seq),
                     default="outside")
        attrs = ["ENT_IOB", "ENT_TYPE", "ENT_KB_ID", "ENT_ID"]
        assert doc.to_array(attrs).tolist() == ref.to_array(attrs).tolist()
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [(e.start, e.end, e.label_) for e in ref.ents]
        n_ents += len(ref.ents)
    assert n_ents > 20  # the sequences do hold entities, of every length


def test_ner_convert_conll(tmp_path):
    src = tmp_path / "train.txt"
    src.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
                   "Peter B-PER\nBlackburn I-PER\n\nnothing O\n")
    report = convert(src, tmp_path / "train.spacy")
    assert report.n_docs == 3 and report.labels == {"ORG": 1, "MISC": 1, "PER": 1}
    from spacy.tokens import DocBin

    docs = list(DocBin().from_disk(tmp_path / "train.spacy").get_docs(spacy.blank("en").vocab))
    assert [(e.text, e.label_) for e in docs[1].ents] == [("Peter Blackburn", "PER")]
    assert docs[2].has_annotation("ENT_IOB") and not docs[2].ents  # annotated, no entities


def test_ner_convert_errors_and_alignment(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("EU B-ORG\nrejects\n\nPeter B-PER\n")
    with pytest.raises(BertflowError, match=r"bad.txt:2: expected 'token ... TAG'"):
        convert(bad, tmp_path / "o.spacy")
    skipped = convert(bad, tmp_path / "o.spacy", skip_bad=True)
    assert skipped.n_skipped == 1 and skipped.n_docs == 1  # the whole first sentence, not just its bad line
    src = tmp_path / "ents.jsonl"
    src.write_text(json.dumps({"text": "Apple Inc. hired Jo.", "entities": [[0, 8, "ORG"], [17, 19, "PER"]]}) + "\n")
    with pytest.raises(BertflowError, match=r"entity 'Apple In' \(0-8, ORG\) does not fall on token boundaries"):
        convert(src, tmp_path / "o.spacy")
    report = convert(src, tmp_path / "o.spacy", alignment_mode="expand")
    assert report.n_adjusted == 1 and report.n_entities == 2
    assert "'Apple In' -> 'Apple Inc.'" in report.summary()
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "x", "entities": [[0, 1, "A"]]}\n{"text": \n')
    with pytest.raises(BertflowError, match=r"broken.jsonl:2: invalid JSON"):
        convert(broken, tmp_path / "o.spacy")
