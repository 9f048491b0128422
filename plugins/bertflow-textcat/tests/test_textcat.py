import json

import pytest
import spacy
from spacy.training import Example
from spacy.util import fix_random_seed
from thinc.api import Adam

from bertflow.api import BertflowError, tiny_encoder_config
from bertflow_textcat.convert import convert

POS = ["good great movie", "love this film", "great good fun", "very good"]
NEG = ["bad terrible movie", "hate this film", "terrible bad", "very bad"]


def make_pipeline(tiny_bert_dir, **model):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir))
    nlp.add_pipe("bertflow_textcat", name="textcat", config={"model": {"dropout": 0.0, **model}})
    return nlp


def exclusive_examples(nlp):
    egs = []
    for text in POS + NEG:
        doc = nlp.make_doc(text)
        egs.append(Example.from_dict(doc, {"cats": {"POS": float(text in POS), "NEG": float(text in NEG)}}))
    return egs


def train(nlp, egs, steps=40, lr=3e-3):
    fix_random_seed(0)
    nlp.initialize(lambda: egs)
    optimizer = Adam(lr)
    return [nlp.update(egs, sgd=optimizer)["textcat"] for _ in range(steps)]


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["cls", "pooler", "mean"])
def test_textcat_exclusive_learns(tiny_bert_dir, pooling):
    nlp = make_pipeline(tiny_bert_dir, pooling=pooling)
    egs = exclusive_examples(nlp)
    losses = train(nlp, egs)
    assert losses[-1] < losses[0] * 0.2
    docs = list(nlp.pipe(POS + NEG))
    for doc in docs:
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(doc.cats, key=doc.cats.get) == ("POS" if doc.text in POS else "NEG")
    scores = nlp.evaluate(egs)
    assert scores["cats_acc"] == 1.0 and scores["cats_macro_f"] == 1.0 and scores["cats_score"] == 1.0
    one_by_one = [nlp(t).cats for t in POS + NEG]
    for doc, cats in zip(docs, one_by_one):
        for label in cats:
            assert doc.cats[label] == pytest.approx(cats[label], abs=1e-5)


@pytest.mark.slow
def test_textcat_multilabel_learns(tiny_bert_dir):
    nlp = make_pipeline(tiny_bert_dir, exclusive_classes=False)
    data = {"good movie": ["POS", "FILM"], "bad film": ["NEG", "FILM"], "good": ["POS"], "bad": ["NEG"],
            "great movie love": ["POS", "FILM"], "terrible": ["NEG"]}
    egs = [Example.from_dict(nlp.make_doc(t), {"cats": {l: float(l in ls) for l in ("POS", "NEG", "FILM")}})
           for t, ls in data.items()]
    losses = train(nlp, egs, steps=100)
    assert losses[-1] < losses[0] * 0.2
    for text, labels in data.items():
        cats = nlp(text).cats
        assert {l for l, v in cats.items() if v >= 0.5} == set(labels), (text, cats)
    assert nlp.evaluate(egs)["cats_acc"] == 1.0


def test_textcat_docs_without_cats_give_no_loss(tiny_bert_dir):
    nlp = make_pipeline(tiny_bert_dir)
    egs = exclusive_examples(nlp)
    unlabeled = [Example(nlp.make_doc("the cat sat"), nlp.make_doc("the cat sat"))]
    nlp.initialize(lambda: egs)
    head = nlp.get_pipe("textcat")
    docs = [eg.predicted for eg in egs + unlabeled]
    nlp.get_pipe("encoder").set_annotations(docs, nlp.get_pipe("encoder").predict(docs))
    scores = head.model.predict(docs)
    loss_all, d_all = head.get_loss(egs + unlabeled, scores)
    loss_lab, _ = head.get_loss(egs, scores[:-1])
    assert not d_all[-1].any() and loss_all == pytest.approx(loss_lab)


def test_textcat_unknown_gold_label_error(tiny_bert_dir):
    nlp = make_pipeline(tiny_bert_dir)
    egs = exclusive_examples(nlp)
    nlp.initialize(lambda: egs)
    bad = [Example.from_dict(nlp.make_doc("good"), {"cats": {"POS": 1.0, "NEUTRAL": 0.0}})]
    with pytest.raises(BertflowError, match="Unknown label 'NEUTRAL' in the gold cats of the doc starting 'good'"):
        nlp.update(bad)


def test_textcat_no_labels_error(tiny_bert_dir):
    nlp = make_pipeline(tiny_bert_dir)
    egs = [Example(nlp.make_doc("good"), nlp.make_doc("good"))]
    with pytest.raises(BertflowError, match="No labels for 'textcat'"):
        nlp.initialize(lambda: egs)


def test_textcat_serialization_roundtrip(tiny_bert_dir, tmp_path):
    nlp = make_pipeline(tiny_bert_dir)
    train(nlp, exclusive_examples(nlp), steps=5)
    before = [nlp(t).cats for t in POS + NEG]
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("textcat").labels == ("NEG", "POS")
    for cats, text in zip(before, POS + NEG):
        after = loaded(text).cats
        for label in cats:
            assert after[label] == pytest.approx(cats[label], abs=1e-6)
    again = make_pipeline(tiny_bert_dir)
    again.from_bytes(nlp.to_bytes())
    assert again("good").cats == pytest.approx(nlp("good").cats, abs=1e-6)


def test_textcat_convert_tsv_header_and_label_map(tmp_path):
    src = tmp_path / "train.tsv"
    src.write_text("sentence\tlabel\ngood movie \t1\nbad film\t0\n")
    report = convert(src, tmp_path / "train.spacy", label_map={"0": "NEGATIVE", "1": "POSITIVE"})
    assert report.n_docs == 2 and report.labels == ["NEGATIVE", "POSITIVE"] and not report.multi_label
    from spacy.tokens import DocBin

    docs = list(DocBin().from_disk(tmp_path / "train.spacy").get_docs(spacy.blank("en").vocab))
    assert docs[0].text == "good movie " and docs[0].cats == {"NEGATIVE": 0.0, "POSITIVE": 1.0}


def test_textcat_convert_errors_name_the_line(tmp_path):
    src = tmp_path / "bad.tsv"
    src.write_text("sentence\tlabel\ngood movie\t1\nthree\tcolumns\there\n\t0\nfine\t0\n")
    with pytest.raises(BertflowError, match=r"bad.tsv:3: expected 2 tab-separated columns \(text, label\), found 3"):
        convert(src, tmp_path / "out.spacy")
    report = convert(src, tmp_path / "out.spacy", skip_bad=True)
    assert report.n_docs == 2 and report.n_skipped == 2
    assert "bad.tsv:4: empty text" in report.summary()
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"text": "ok", "label": "A"}\n{"text": "oops", "label": \n')
    with pytest.raises(BertflowError, match=r"bad.jsonl:2: invalid JSON"):
        convert(jsonl, tmp_path / "out.spacy")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BertflowError, match="no valid rows"):
        convert(empty, tmp_path / "out.spacy")


def test_textcat_convert_jsonl_multilabel(tmp_path):
    src = tmp_path / "ml.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in [
        {"text": "good movie", "labels": ["POS", "FILM"]}, {"text": "bad", "labels": ["NEG"]}]))
    report = convert(src, tmp_path / "ml.spacy")
    assert report.multi_label and report.labels == ["FILM", "NEG", "POS"]


def test_textcat_plugin_hooks_and_cli(tmp_path):
    from bertflow.api import get_tasks, run_cli

    assert get_tasks()["textcat"].factory == "bertflow_textcat"
    src = tmp_path / "in.tsv"
    src.write_text("text\tlabel\ngood\tpos\nbad\tneg\nbroken line\n")

    def cli(*args):
        result = run_cli(args)
        return result.code, result.stdout + result.stderr

    code, out = cli("convert", "textcat", str(src), str(tmp_path / "o.spacy"))
    assert code == 1 and "in.tsv:4: expected 2 tab-separated columns" in out
    code, out = cli("convert", "textcat", str(src), str(tmp_path / "o.spacy"), "--skip-bad")
    assert code == 0 and "2 docs" in out and "1 malformed rows skipped" in out
