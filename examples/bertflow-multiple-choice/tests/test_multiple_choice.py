"""The example plugin, tested as a third party would: only bertflow.api, the
bertflow pytest fixtures and spaCy's own entry points."""
import json

import numpy
import pytest
import spacy
from spacy.cli.train import train as spacy_train
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import fix_random_seed, load_config_from_str
from thinc.api import Adam

from bertflow.api import BertflowError, batch_by_group, batch_rows, get_tasks, make_config, tiny_encoder_config
from bertflow_mc import choose
from bertflow_mc.component import MultipleChoiceHead
from bertflow_mc.convert import convert

# The right candidate depends on the context: only the pair input tells them apart.
QUESTIONS = [
    {"id": "q1", "context": "the movie was good", "candidates": ["great fun", "terrible film"], "label": 0},
    {"id": "q2", "context": "the movie was bad", "candidates": ["great fun", "terrible film"], "label": 1},
    {"id": "q3", "context": "i love this film", "candidates": ["terrible film", "great fun"], "label": 1},
    {"id": "q4", "context": "i hate this film", "candidates": ["terrible film", "great fun"], "label": 0},
]


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf8")
    return path


def mc_examples(nlp, tmp_path):
    report = convert(write_jsonl(tmp_path / "mc.jsonl", QUESTIONS), tmp_path / "mc.spacy")
    assert (report.n_questions, report.n_docs) == (4, 8)
    refs = list(DocBin().from_disk(tmp_path / "mc.spacy").get_docs(nlp.vocab))
    egs = []
    for ref in refs:
        eg = Example(nlp.make_doc(ref.text), ref)
        eg.predicted._.text_pair = ref._.text_pair
        egs.append(eg)
    return egs


def test_plugin_is_discovered():
    spec = get_tasks()["multiple_choice"]
    assert spec.factory == "bertflow_multiple_choice"


def test_multiple_choice_learns_from_the_pair(tiny_bert_dir, tmp_path):
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir))
    nlp.add_pipe("bertflow_multiple_choice", name="multiple_choice", config={"model": {"dropout": 0.0}})
    egs = mc_examples(nlp, tmp_path)
    nlp.initialize(lambda: egs)
    optimizer = Adam(3e-3)
    losses = [nlp.update(egs, sgd=optimizer)["multiple_choice"] for _ in range(150)]
    assert losses[-1] < losses[0] * 0.2
    for q in QUESTIONS:
        ranked = choose(nlp, q["context"], q["candidates"])
        assert sum(r["prob"] for r in ranked) == pytest.approx(1.0, abs=1e-5)
        assert max(range(len(ranked)), key=lambda i: ranked[i]["prob"]) == q["label"], (q, ranked)
    assert nlp.evaluate(egs)["mc_acc"] == 1.0


def test_batcher_keeps_questions_whole(tiny_bert_dir, tmp_path):
    nlp = spacy.blank("en")
    egs = mc_examples(nlp, tmp_path)
    shuffled = [egs[i] for i in (3, 0, 5, 6, 1, 2, 7, 4)]
    batches = list(batch_by_group(size=3, group_attr="mc_question")(shuffled))
    assert [len(b) for b in batches] == [6, 2]
    for batch in batches:
        questions = [eg.reference._.mc_question for eg in batch]
        assert all(questions.count(q) == 2 for q in questions)


def test_converter_names_the_bad_line(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [QUESTIONS[0], {"context": "x", "candidates": ["a", "b"], "label": 5}])
    with pytest.raises(BertflowError, match=r"bad\.jsonl:2: 'label' must be an index"):
        convert(bad, tmp_path / "bad.spacy")
    report = convert(bad, tmp_path / "bad.spacy", skip_bad=True)
    assert (report.n_questions, report.n_skipped) == (1, 1)
    (tmp_path / "broken.jsonl").write_text('{"context": \n', encoding="utf8")
    with pytest.raises(BertflowError, match=r"broken\.jsonl:1: invalid JSON"):
        convert(tmp_path / "broken.jsonl", tmp_path / "x.spacy")


def test_choose_without_the_head_says_what_to_do(nlp_tiny):
    with pytest.raises(BertflowError, match="no bertflow_multiple_choice component"):
        choose(nlp_tiny, "ctx", ["a", "b"])


def _textcat_corpus(tmp_path):
    from bertflow_textcat.convert import convert as convert_textcat

    rows = [{"text": t, "label": lab} for t, lab in [("good great movie", "POS"), ("bad terrible film", "NEG"),
                                                     ("love this film", "POS"), ("hate this movie", "NEG")]]
    convert_textcat(write_jsonl(tmp_path / "tc.jsonl", rows), tmp_path / "tc.spacy")
    return tmp_path / "tc.spacy"


def test_init_config_textcat_and_multiple_choice_trains(tiny_bert_dir, tmp_path):
    """bertflow init config --tasks textcat,multiple_choice gives a config that
    spacy train runs unchanged on a mixed corpus."""
    nlp = spacy.blank("en")
    mixed = list(DocBin().from_disk(_textcat_corpus(tmp_path)).get_docs(nlp.vocab))
    mc_examples(nlp, tmp_path)
    mixed += list(DocBin().from_disk(tmp_path / "mc.spacy").get_docs(nlp.vocab))
    DocBin(docs=mixed, store_user_data=True).to_disk(tmp_path / "mixed.spacy")
    text = make_config(["textcat", "multiple_choice"], encoder=str(tiny_bert_dir), max_steps=6)
    assert '@batchers = "bertflow.batch_by_group.v1"' in text and 'group_attr = "mc_question"' in text
    (tmp_path / "config.cfg").write_text(text)
    spacy_train(tmp_path / "config.cfg", tmp_path / "out", use_gpu=-1,
                overrides={"paths.train": str(tmp_path / "mixed.spacy"), "paths.dev": str(tmp_path / "mixed.spacy")})
    trained = spacy.load(tmp_path / "out" / "model-last")
    assert trained.pipe_names == ["encoder", "textcat", "multiple_choice"]
    assert set(trained("good movie").cats) == {"NEG", "POS"}
    ranked = choose(trained, "the movie was good", ["great fun", "terrible film"])
    assert len(ranked) == 2 and all(numpy.isfinite(r["score"]) for r in ranked)


def test_adding_a_head_to_a_frozen_pipeline_keeps_old_outputs(tiny_bert_dir, tmp_path, monkeypatch):
    """Train a two-head pipeline, add the multiple-choice head with the encoder
    and old heads frozen (bertflow init config --base), train it: the old
    heads' outputs on fixed texts are bit-identical before and after."""
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir))
    nlp.add_pipe("bertflow_textcat", name="textcat")
    nlp.add_pipe("bertflow_ner", name="ner")
    egs = []
    for text, cat, ents in [("john loves paris", "POS", [(0, 4, "PER"), (11, 16, "LOC")]),
                            ("mary hates london", "NEG", [(0, 4, "PER"), (11, 17, "LOC")])]:
        egs.append(Example.from_dict(nlp.make_doc(text), {"cats": {"POS": float(cat == "POS"), "NEG": float(cat == "NEG")},
                                                           "entities": ents}))
    nlp.initialize(lambda: egs)
    optimizer = Adam(1e-3)
    for _ in range(5):
        nlp.update(egs, sgd=optimizer)
    nlp.to_disk(tmp_path / "base")
    texts = ["john loves london", "the movie was good", "mary ran to paris"]

    def outputs(pipeline):
        docs = list(pipeline.pipe(texts))
        hidden = [d._.trf_data.model_output["last_hidden_state"].copy() for d in docs]
        ner = pipeline.get_pipe("ner")
        ner_probs = [batch_rows(ner.model.ops, ner.model.predict(docs))[0]]  # every token's tag probabilities
        return [d.cats for d in docs], [[(e.start, e.end, e.label_) for e in d.ents] for d in docs], hidden, ner_probs

    before = outputs(spacy.load(tmp_path / "base"))
    mc_examples(nlp, tmp_path)
    text = make_config(["multiple_choice"], base=tmp_path / "base", max_steps=6)
    training = load_config_from_str(text, interpolate=False)["training"]
    assert training["frozen_components"] == ["encoder", "textcat", "ner"]
    assert training["annotating_components"] == ["encoder"]
    (tmp_path / "add.cfg").write_text(text)
    seen = []  # the new head trains on the frozen encoder's real outputs, not on zeros
    real_get_loss = MultipleChoiceHead.get_loss
    monkeypatch.setattr(MultipleChoiceHead, "get_loss",
                        lambda self, egs, scores: seen.append(float(scores.std())) or real_get_loss(self, egs, scores))
    spacy_train(tmp_path / "add.cfg", tmp_path / "out", use_gpu=-1,
                overrides={"paths.train": str(tmp_path / "mc.spacy"), "paths.dev": str(tmp_path / "mc.spacy")})
    trained = spacy.load(tmp_path / "out" / "model-last")
    assert trained.pipe_names == ["encoder", "textcat", "ner", "multiple_choice"]
    after = outputs(trained)
    assert before[0] == after[0] and before[1] == after[1]
    for a, b in zip(before[2] + before[3], after[2] + after[3]):
        assert numpy.array_equal(a, b)
    assert len(seen) >= 6 and all(v > 0 for v in seen)
