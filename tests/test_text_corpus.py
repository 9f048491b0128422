"""bertflow.TextCorpus.v1: raw text for self-supervised heads, and the encoder's
wordpiece layout helpers a masked-LM head relies on."""
import json

import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from bertflow.api import (BertflowError, create_corpus_reader, create_text_corpus_reader, tiny_encoder_config,
                          wordpiece_positions, wordpiece_words)
from bertflow.data.corpus import create_mixed_corpus


@pytest.fixture
def nlp():
    return spacy.blank("en")


def test_lines_paragraphs_and_jsonl(tmp_path, nlp):
    (tmp_path / "lines.txt").write_text("first doc here\n\n  \nsecond doc\r\n", encoding="utf8")
    docs = [eg.reference for eg in create_text_corpus_reader(tmp_path / "lines.txt")(nlp)]
    assert [d.text for d in docs] == ["first doc here", "second doc"]
    assert all(d._.raw_text for d in docs)
    (tmp_path / "paras.txt").write_text("one line\nand more\n\nanother\n", encoding="utf8")
    docs = [eg.reference.text for eg in create_text_corpus_reader(tmp_path / "paras.txt", paragraphs=True)(nlp)]
    assert docs == ["one line and more", "another"]
    (tmp_path / "rows.jsonl").write_text('{"text": "a b"}\n\n{"body": "c", "text": "d e"}\n', encoding="utf8")
    assert [eg.reference.text for eg in create_text_corpus_reader(tmp_path / "rows.jsonl")(nlp)] == ["a b", "d e"]
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("x\n")
    (folder / "b.jsonl").write_text('{"text": "y"}\n')
    (folder / "ignored.csv").write_text("z\n")
    assert [eg.reference.text for eg in create_text_corpus_reader(folder)(nlp)] == ["x", "y"]


def test_bad_lines_name_file_and_line_or_are_skipped(tmp_path, nlp, caplog):
    (tmp_path / "bad.txt").write_bytes(b"good line\nbad \xff byte\nlast line\n")
    with pytest.raises(BertflowError, match=r"bad.txt:2: not valid UTF-8.*skip_bad"):
        list(create_text_corpus_reader(tmp_path / "bad.txt")(nlp))
    texts = [eg.reference.text for eg in create_text_corpus_reader(tmp_path / "bad.txt", skip_bad=True)(nlp)]
    assert texts == ["good line", "last line"]
    assert "1 bad lines skipped" in caplog.text
    caplog.clear()
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{oops\n{"text": 3}\n{"other": "x"}\n')
    with pytest.raises(BertflowError, match=r"bad.jsonl:2: invalid JSON"):
        list(create_text_corpus_reader(tmp_path / "bad.jsonl")(nlp))
    texts = [eg.reference.text for eg in create_text_corpus_reader(tmp_path / "bad.jsonl", skip_bad=True)(nlp)]
    assert texts == ["ok"]
    err = caplog.text
    assert "3 bad lines skipped" in err and "'text' is a int" in err and "no 'text' field" in err


def test_empty_or_missing_corpus_is_an_error(tmp_path, nlp):
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(BertflowError, match="has no text in it"):
        list(create_text_corpus_reader(tmp_path / "empty.txt")(nlp))
    with pytest.raises(BertflowError, match="no such file or folder"):
        create_text_corpus_reader(tmp_path / "missing.txt")


def test_long_documents_are_cut_not_dropped(tmp_path, nlp):
    words = [f"w{i}" for i in range(25)]
    (tmp_path / "long.txt").write_text(" ".join(words) + "\n")
    docs = [eg.reference for eg in create_text_corpus_reader(tmp_path / "long.txt", max_length=10)(nlp)]
    assert [len(d) for d in docs] == [10, 10, 5]
    assert [t.text for d in docs for t in d] == words
    limited = list(create_text_corpus_reader(tmp_path / "long.txt", max_length=10, limit=2)(nlp))
    assert len(limited) == 2


def test_a_pair_maker_turns_documents_into_labelled_sentence_pairs(tmp_path, nlp):
    """``pairs`` gets each document as its sentences and a seeded rng; each doc
    is sentence b with text_pair a, the maker's values on the reference doc."""
    from spacy.tokens import Doc

    if not Doc.has_extension("pair_gap"):
        Doc.set_extension("pair_gap", default=None)
    (tmp_path / "docs.txt").write_text("One here. Two here. Three here.\nFour here. Five here.\n")

    def gaps(documents, rng):
        for sentences in documents:
            for a, b in zip(sentences, sentences[1:]):
                yield a, b, {"pair_gap": rng.randint(0, 9)}

    reader = create_text_corpus_reader(tmp_path / "docs.txt", pairs=gaps, seed=5)
    first = list(reader(nlp))
    assert [(eg.predicted._.text_pair, eg.predicted.text) for eg in first] == [
        ("One here.", "Two here."), ("Two here.", "Three here."), ("Four here.", "Five here.")]
    assert all(eg.reference._.text_pair == eg.predicted._.text_pair and eg.reference._.raw_text for eg in first)
    import random
    rng = random.Random(5)
    assert [eg.reference._.pair_gap for eg in first] == [rng.randint(0, 9) for _ in range(3)]  # seed + pass 0
    rng = random.Random(6)
    assert [eg.reference._.pair_gap for eg in reader(nlp)] == [rng.randint(0, 9) for _ in range(3)]  # pass 1


def test_corpus_readers_take_raw_text_paths(tmp_path, nlp):
    (tmp_path / "text.txt").write_text("raw one\nraw two\n")
    assert [eg.reference._.raw_text for eg in create_corpus_reader(tmp_path / "text.txt")(nlp)] == [True, True]
    doc = nlp.make_doc("labelled")
    doc.cats = {"A": 1.0}
    DocBin(docs=[doc], store_user_data=True).to_disk(tmp_path / "labelled.spacy")
    mixed = create_mixed_corpus({"text": tmp_path / "text.txt", "cats": tmp_path / "labelled.spacy"},
                                sampling="concat")
    examples = list(mixed(nlp))
    assert [(eg.reference.text, eg.reference._.raw_text) for eg in examples] == [
        ("raw one", True), ("raw two", True), ("labelled", False)]


def test_wordpiece_words_and_positions_match_the_encoder_rows(tiny_bert_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", config=tiny_encoder_config(tiny_bert_dir, window=16, stride=8))
    nlp.initialize()
    encoder = nlp.get_pipe("bertflow_encoder")
    doc = nlp.make_doc("the xylophone sat on the mat " * 12)
    tok = encoder.tokenize([doc])[0]
    words = wordpiece_words(doc, tok)
    assert len(words) == len(tok.ids) and (numpy.diff(words) >= 0).all()
    assert doc[int(words[1])].text == "xylophone" and (words == words[1]).sum() > 1  # one word, many wordpieces
    datas, windows = encoder.outputs([doc], [tok])
    assert windows[0]["n_windows"] > 1
    positions = wordpiece_positions(windows[0])
    ids = datas[0].wordpieces.input_ids
    assert [int(ids[r, p]) for r, p in positions] == list(tok.ids)
    # each wordpiece is read from the window the token alignment uses
    flat = set(datas[0].align.data.ravel().tolist())
    seq = ids.shape[1]
    assert {int(r * seq + p) for r, p in positions} == flat


def test_evaluate_reads_raw_text(tmp_path, tiny_bert_dir):
    from bertflow.training.evaluation import read_examples

    (tmp_path / "held.jsonl").write_text(json.dumps({"text": "held out text"}) + "\n")
    examples = read_examples(spacy.blank("en"), [tmp_path / "held.jsonl"])
    assert [eg.reference._.raw_text for eg in examples] == [True]
