import json
import random

import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin, SpanGroup
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

import bertflow
from bertflow.api import BertflowError, tiny_encoder_config
from bertflow_qa import Answer, ask, ask_many
from bertflow_qa.convert import convert
from bertflow_qa.decoding import batch_best_spans, batch_null_scores, best_spans, null_scores
from bertflow_qa.scorer import normalize_answer, squad_scores, token_f1

FILLER = ("the a of to and in is was for on with as by at from it that this be are were he she they we sat mat run "
          "ran fast slow big small good bad movie film world hello").split()
ANIMALS = ["cat", "dog"]
CITIES = ["paris", "london", "berlin"]


def make_pipeline(tiny_bert_dir, window=256, stride=192, **qa):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir, window, stride))
    nlp.add_pipe("bertflow_qa", name="qa", config={"model": {"dropout": 0.0}, **qa})
    return nlp


def toy_context(rng, n_words, answer=None, at=None):
    words = [rng.choice(FILLER) for _ in range(n_words)]
    if answer is not None:
        words[at if at is not None else rng.randrange(n_words)] = answer
    return words


def qa_example(nlp, words, question, answer_index=None):
    """A training example: the answer is the single word at ``answer_index``
    (None: an unanswerable question)."""
    ref = Doc(nlp.vocab, words=words)
    ref._.text_pair = question
    spans = [] if answer_index is None else [ref[answer_index: answer_index + 1]]
    ref.spans["answers"] = SpanGroup(ref, name="answers", spans=spans, attrs={"texts": [s.text for s in spans]})
    pred = Doc(nlp.vocab, words=words)
    pred._.text_pair = question
    return Example(pred, ref)


def toy_examples(nlp, n=24, seed=0, n_words=12, unanswerable=False):
    """Each context holds an animal and a city; the question says which one is the answer."""
    rng = random.Random(seed)
    egs = []
    for i in range(n):
        words = toy_context(rng, n_words)
        a, c = rng.sample(range(n_words), 2)
        words[a], words[c] = rng.choice(ANIMALS), rng.choice(CITIES)
        kind = i % 3 if unanswerable else i % 2
        if kind == 0:
            egs.append(qa_example(nlp, words, "what animal", a))
        elif kind == 1:
            egs.append(qa_example(nlp, words, "where city", c))
        else:  # asks for a colour the context never has
            egs.append(qa_example(nlp, words, "what colour", None))
    return egs


def train(nlp, egs, steps=60, lr=3e-3):
    fix_random_seed(0)
    nlp.initialize(lambda: egs)
    optimizer = Adam(lr)
    losses = []
    for _ in range(steps):
        step = {}
        nlp.update(egs, sgd=optimizer, losses=step)
        losses.append(step["qa"])
    return losses


@pytest.fixture(scope="module")
def trained(tiny_bert_dir):
    # small windows (24 wordpieces, stride 16), so long contexts span several
    nlp = make_pipeline(tiny_bert_dir, window=24, stride=16)
    egs = toy_examples(nlp, n=150, unanswerable=True)  # enough variety to generalise, not memorise
    losses = train(nlp, egs, steps=100)
    return nlp, egs, losses


@pytest.mark.slow
def test_learns_toy_qa(trained):
    nlp, egs, losses = trained
    assert numpy.mean(losses[-10:]) < 0.5 * numpy.mean(losses[:10])
    right = 0
    for eg in egs:
        gold = eg.reference.spans["answers"]
        if not len(gold):
            continue
        doc = nlp(eg.predicted.copy())
        right += doc.spans["answers"][0].text == gold[0].text
    answerable = sum(1 for eg in egs if len(eg.reference.spans["answers"]))
    assert right == answerable


def test_answers_are_ranked_with_scores_and_null_score(trained):
    nlp, egs, _ = trained
    doc = nlp.make_doc("the cat sat on the mat in paris")
    doc._.text_pair = "what animal"
    doc = nlp(doc)
    group = doc.spans["answers"]
    assert len(group) == 3 and group[0].text == "cat"
    scores = group.attrs["scores"]
    assert scores == sorted(scores, reverse=True) and all(0.0 < s <= 1.0 for s in scores)
    assert 0.0 <= group.attrs["null_score"] <= 1.0 and group.attrs["question"] == "what animal"


def test_ask_offsets_slice_the_context_exactly(trained):
    nlp, _, _ = trained
    context = "  the  dog sat,\tin   london… with 日本語 and 🧑‍🚀 emoji  "
    answers = ask(nlp, "what animal", context, top_k=5)
    assert len(answers) == 5 and all(isinstance(a, Answer) for a in answers)
    for a in answers:
        assert context[a.start_char: a.end_char] == a.text == a.span.text
        assert a.text.strip() == a.text and a.text  # never starts or ends on whitespace


def test_ask_many_questions_one_context_and_stream(trained):
    nlp, _, _ = trained
    context = nlp.make_doc("a cat was in berlin")
    n_tokens_before = len(context)
    both = ask(nlp, ["what animal", "where city"], context)
    assert [a[0].text for a in both] == ["cat", "berlin"]
    assert len(context) == n_tokens_before and context._.text_pair is None  # the user's doc is untouched
    pairs = [("what animal", "the dog is here"), ("where city", "we ran to paris"), ("what animal", "")]
    results = list(ask_many(nlp, pairs, top_k=2, batch_size=2))
    assert [r[0].text if r else None for r in results] == ["dog", "paris", None]


def test_ask_errors(trained, tiny_bert_dir):
    nlp, _, _ = trained
    with pytest.raises(BertflowError, match="non-empty"):
        ask(nlp, "   ", "a cat")
    no_qa = spacy.blank("en")
    no_qa.add_pipe("bertflow_encoder", config=tiny_encoder_config(tiny_bert_dir))
    with pytest.raises(BertflowError, match="no bertflow_qa component"):
        ask(no_qa, "what animal", "a cat")


def test_bertflow_ask_is_exposed(trained):
    nlp, _, _ = trained
    assert bertflow.ask is ask
    assert bertflow.ask(nlp, "what animal", "a dog")[0].text == "dog"


def test_docs_without_question_get_no_answers_and_no_loss(trained):
    nlp, _, _ = trained
    doc = nlp("the cat sat")
    assert "answers" not in doc.spans
    qa = nlp.get_pipe("qa")
    ref = Doc(nlp.vocab, words=["a", "cat"])
    ref._.text_pair = "what animal"  # a question without gold annotation: no loss
    egs = [Example(Doc(nlp.vocab, words=["a", "cat"]), ref), Example(Doc(nlp.vocab, words=["a", "dog"]),
                                                                     Doc(nlp.vocab, words=["a", "dog"]))]
    for eg in egs:
        eg.predicted._.text_pair = eg.reference._.text_pair
    scores = qa.model.predict([eg.predicted for eg in egs])
    loss, d_scores = qa.get_loss(egs, scores)
    assert loss == 0.0 and all(float(numpy.abs(d).sum()) == 0.0 for d in d_scores)


def test_no_answer_threshold(trained):
    nlp, _, _ = trained
    qa = nlp.get_pipe("qa")
    doc = nlp.make_doc("the dog sat in paris with the cat")
    doc._.text_pair = "what colour"  # trained as unanswerable
    try:
        for threshold, expect_answer in ((None, True), (1e9, True), (-1e9, False)):
            qa.cfg["no_answer_threshold"] = threshold
            out = nlp(doc.copy())
            assert bool(len(out.spans["answers"])) is expect_answer
        qa.cfg["no_answer_threshold"] = 0.0  # the plain comparison: the trained head abstains here ...
        out = nlp(doc.copy())
        assert len(out.spans["answers"]) == 0 and out.spans["answers"].attrs["null_score"] > 0.5
        answerable = doc.copy()
        answerable._.text_pair = "what animal"  # ... and answers this one
        assert nlp(answerable).spans["answers"][0].text in ANIMALS
    finally:
        qa.cfg["no_answer_threshold"] = None


def test_long_context_answer_in_last_window(trained):
    nlp, _, _ = trained
    rng = random.Random(7)
    words = toy_context(rng, 72)  # 3x the window; a city early on, the animal in the last window
    words[10], words[68] = "london", "cat"
    doc = Doc(nlp.vocab, words=words)
    doc._.text_pair = "what animal"
    doc = nlp(doc)
    windows = doc._.trf_windows
    assert windows["n_windows"] >= 3 and windows["pair_wordpieces"] > 0  # the question is in every window
    span = doc.spans["answers"][0]
    assert span.text == "cat" and span.start == 68 and span.start >= windows["starts"][-1]


def test_round_trip_bytes_and_disk(trained, tmp_path):
    nlp, _, _ = trained
    doc = nlp.make_doc("the dog was in london")
    doc._.text_pair = "where city"
    before_doc = nlp(doc.copy())
    before = before_doc.spans["answers"]
    nlp.to_disk(tmp_path / "qa")
    loaded = spacy.load(tmp_path / "qa")
    after_doc = loaded(doc.copy())
    after = after_doc.spans["answers"]
    assert [s.text for s in after] == [s.text for s in before]
    numpy.testing.assert_allclose(after.attrs["scores"], before.attrs["scores"], rtol=1e-5)
    assert loaded.get_pipe("qa").cfg == nlp.get_pipe("qa").cfg
    from_bytes = type(nlp).from_config(nlp.config).from_bytes(nlp.to_bytes())
    bytes_doc = from_bytes(doc.copy())
    assert [s.text for s in bytes_doc.spans["answers"]] == [s.text for s in before]


def test_converted_squad_trains_through_the_corpus_reader(tmp_path, tiny_bert_dir):
    """The converter's output trains with bertflow.Corpus.v1 (the question reaches the predicted docs)."""
    squad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": "The cat sat in Paris.", "qas": [
            {"id": "q1", "question": "What animal?", "answers": [{"text": "cat", "answer_start": 4}]},
            {"id": "q2", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 15}]}]}]}]}
    (tmp_path / "s.json").write_text(json.dumps(squad))
    convert(tmp_path / "s.json", tmp_path / "s.spacy")
    from bertflow.api import create_corpus_reader
    nlp = make_pipeline(tiny_bert_dir)
    egs = list(create_corpus_reader(tmp_path / "s.spacy")(nlp))
    assert [eg.predicted._.text_pair for eg in egs] == ["What animal?", "Where?"]
    nlp.initialize(lambda: egs)
    losses = {}
    nlp.update(egs, sgd=Adam(1e-3), losses=losses)
    assert losses["qa"] > 0.0
    scores = nlp.evaluate(egs)
    assert 0.0 <= scores["qa_f1"] <= 1.0 and 0.0 <= scores["qa_exact"] <= 1.0


# --- decoding -----------------------------------------------------------------

def test_best_spans_respects_length_order_and_allowed():
    logits = numpy.full((7, 2), -5.0)
    logits[0] = [3.0, 3.0]  # [CLS]: never an answer
    logits[1, 0], logits[6, 1] = 4.0, 4.0  # best unconstrained span: tokens 0..5 (6 tokens)
    logits[3, 0], logits[4, 1] = 2.0, 2.0  # tokens 2..3
    spans = best_spans(logits, max_answer_len=3, top_k=2)
    assert (spans[0].start, spans[0].end) == (2, 4)
    assert all(s.end - s.start <= 3 for s in spans) and spans[0].logit >= spans[1].logit
    assert (best_spans(logits, max_answer_len=10, top_k=1)[0].start, best_spans(logits, max_answer_len=10)[0].end) == (0, 6)
    allowed = numpy.ones(6, dtype=bool)
    allowed[2] = False
    assert all(s.start != 2 and s.end - 1 != 2 for s in best_spans(logits, max_answer_len=3, top_k=5, allowed=allowed))
    assert best_spans(numpy.zeros((1, 2)), top_k=3) == []  # an empty context has no spans
    null_logit, null_prob = null_scores(logits)
    assert null_logit == 6.0 and 0.0 < null_prob < 1.0


def test_answers_batched_equal_one_doc_at_a_time(tiny_bert_dir):
    """The QA head on a batch of question docs (short and windowed contexts,
    whitespace tokens, an empty context, a doc without a question) gives each
    doc exactly the answers it gets alone."""
    nlp = make_pipeline(tiny_bert_dir, window=16, stride=12, top_k=3)
    nlp.initialize(lambda: toy_examples(nlp))
    rng = random.Random(3)
    contexts = [" ".join(toy_context(rng, n, "cat")) for n in (5, 40, 1, 70)] + ["  a  cat\n\n in paris ", "", "no question"]
    questions = ["what animal", "where city", "what animal", "what animal", "where city", "what animal", None]

    def make(context, question):
        doc = nlp.make_doc(context)
        doc._.text_pair = question
        return doc

    def answers(doc):
        group = doc.spans.get("answers")
        if group is None:
            return None
        return ([(s.start, s.end) for s in group], group.attrs["scores"], group.attrs["null_score"],
                group.attrs["null_logit"])

    batched = [answers(d) for d in nlp.pipe([make(c, q) for c, q in zip(contexts, questions)], batch_size=8)]
    alone = [answers(nlp(make(c, q))) for c, q in zip(contexts, questions)]
    assert batched[-1] is None and batched[-2][0] == [] and any(len(b[0]) == 3 for b in batched[:-2])
    for b, a in zip(batched, alone):
        if a is None:
            assert b is None
            continue
        assert b[0] == a[0]
        numpy.testing.assert_allclose(b[1], a[1], rtol=1e-5)
        assert b[2:] == pytest.approx(a[2:], rel=1e-5)


def reference_spans(logits, max_answer_len, top_k, allowed):
    """Every span scored one by one: what the batched search must find."""
    n = len(logits) - 1
    lp = [logits[:, c] - logits[:, c].max() - numpy.log(numpy.exp(logits[:, c] - logits[:, c].max()).sum())
          for c in (0, 1)]
    spans = [(logits[1 + i, 0] + logits[1 + j, 1], i, j) for i in range(n) for j in range(i, min(n, i + max_answer_len))
             if allowed[i] and allowed[j]]
    spans.sort(key=lambda t: -t[0])
    return [(i, j + 1, score, numpy.exp(lp[0][1 + i] + lp[1][1 + j])) for score, i, j in spans[:top_k]]


def test_batched_span_search_equals_scoring_every_span():
    """Docs of different lengths (an empty one too), whitespace tokens and a
    top_k per doc, searched as one batch: the same spans, logits and
    probabilities as scoring each doc's spans one by one, and the same
    no-answer scores as each doc alone."""
    rng = numpy.random.default_rng(0)
    lengths = [5, 0, 1, 17, 40, 3]
    logits = [rng.normal(size=(1 + n, 2)) for n in lengths]
    allowed = [rng.random(n) > 0.2 for n in lengths]
    top_k = [3, 2, 1, 5, 20, 9]
    found = batch_best_spans(numpy.concatenate(logits), [len(x) for x in logits], max_answer_len=6, top_k=top_k,
                             allowed=numpy.concatenate(allowed))
    null_logits, null_probs = batch_null_scores(numpy.concatenate(logits), [len(x) for x in logits])
    for d in range(len(lengths)):
        expected = reference_spans(logits[d], 6, top_k[d], allowed[d])
        assert [(s.start, s.end) for s in found[d]] == [(i, j) for i, j, _, _ in expected]
        numpy.testing.assert_allclose([s.logit for s in found[d]], [x for _, _, x, _ in expected], rtol=1e-12)
        numpy.testing.assert_allclose([s.prob for s in found[d]], [p for _, _, _, p in expected], rtol=1e-9)
        x = logits[d]
        p_null = numpy.exp(x[0, 0] + x[0, 1]) / (numpy.exp(x[:, 0]).sum() * numpy.exp(x[:, 1]).sum())
        assert (null_logits[d], null_probs[d]) == pytest.approx((x[0, 0] + x[0, 1], p_null), rel=1e-9)
    assert found[1] == [] and len(found[4]) == 20


# --- scorer -------------------------------------------------------------------

def test_squad_normalisation_and_scores():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert token_f1("Denver Broncos", "the Denver Broncos team") == pytest.approx(2 * 1.0 * (2 / 3) / (1 + 2 / 3))
    scores = squad_scores(["Denver Broncos", "1990", ""], [["Denver Broncos", "Broncos"], ["in 1991"], []])
    assert scores["qa_exact"] == pytest.approx(2 / 3)  # the unanswerable one matches the empty prediction
    assert scores["qa_f1"] == pytest.approx((1.0 + 0.0 + 1.0) / 3) and scores["qa_n"] == 3


# --- converter ----------------------------------------------------------------

def squad_file(tmp_path, qas, context="The cat sat in Paris-Nord station.", version="1.1"):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": version, "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": qas}]}]}))
    return path


def test_converter_aligns_counts_and_keeps_unanswerable(tmp_path):
    qas = [
        {"id": "a", "question": "What animal?", "answers": [{"text": "cat", "answer_start": 4}]},
        # "Paris" is inside the token "Paris-Nord"? spaCy splits on the hyphen, so take a real sub-token answer:
        {"id": "b", "question": "Which part?", "answers": [{"text": "ari", "answer_start": 16},
                                                         {"text": "Paris", "answer_start": 15}]},
        {"id": "c", "question": "What colour?", "answers": [], "is_impossible": True},
    ]
    report = convert(squad_file(tmp_path, qas, version="v2.0"), tmp_path / "out.spacy")
    assert (report.n_questions, report.n_answers, report.n_adjusted, report.n_impossible) == (3, 3, 1, 1)
    assert "1 answers expanded" in report.summary()
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(nlp.vocab))
    assert [d._.text_pair for d in docs] == ["What animal?", "Which part?", "What colour?"]
    assert docs[0].spans["answers"][0].text == "cat" and docs[0].spans["answers"].attrs["id"] == "a"
    assert docs[1].spans["answers"][0].text == "Paris"  # expanded from "ari"
    assert docs[1].spans["answers"].attrs["texts"] == ["ari", "Paris"]  # the scorer compares the originals
    assert len(docs[2].spans["answers"]) == 0  # kept as a no-answer example


@pytest.mark.parametrize("qa,message", [
    ({"id": "x", "question": "Q?", "answers": [{"text": "dog", "answer_start": 4}]}, "not at answer_start 4"),
    ({"id": "x", "question": "", "answers": [{"text": "cat", "answer_start": 4}]}, "non-empty 'question'"),
    ({"id": "x", "question": "Q?", "answers": []}, "non-empty 'answers'"),
    ({"id": "x", "question": "Q?", "answers": [{"text": "cat"}]}, "answer_start"),
])
def test_converter_errors_name_the_question(tmp_path, qa, message):
    good = {"id": "ok", "question": "What animal?", "answers": [{"text": "cat", "answer_start": 4}]}
    path = squad_file(tmp_path, [good, qa])
    with pytest.raises(BertflowError, match=r"squad\.json:data\[0\]\.paragraphs\[0\]\.qas\[1\] \(id x\)") as err:
        convert(path, tmp_path / "out.spacy")
    assert message in str(err.value) and "--skip-bad" in str(err.value)
    report = convert(path, tmp_path / "out.spacy", skip_bad=True)
    assert report.n_docs == 1 and report.n_skipped == 1 and message in report.problems[0]


def test_converter_bad_json_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [\n{"paragraphs": [}\n]}')
    with pytest.raises(BertflowError, match=r"bad\.json:2: invalid JSON"):
        convert(path, tmp_path / "out.spacy")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(BertflowError, match="not SQuAD JSON"):
        convert(tmp_path / "list.json", tmp_path / "out.spacy")


def test_convert_cli(tmp_path):
    from bertflow.api import run_cli

    qas = [{"id": "a", "question": "What animal?", "answers": [{"text": "cat", "answer_start": 4}]}]
    ok = run_cli(["qa", "convert", squad_file(tmp_path, qas), tmp_path / "o.spacy"])
    assert ok.code == 0, ok.stderr
    assert "1 questions over 1 contexts" in ok.stdout and (tmp_path / "o.spacy").exists()
    bad = run_cli(["qa", "convert", tmp_path / "missing.json", tmp_path / "o2.spacy"])
    assert bad.code != 0 and "missing.json" in bad.stderr and "not found" in bad.stderr


def test_displacy_renders_answers_and_entities(trained):
    from spacy import displacy

    nlp, _, _ = trained
    doc = nlp.make_doc("the dog was in london")
    doc._.text_pair = "what animal"
    doc = nlp(doc)
    html = displacy.render(doc, style="span", options={"spans_key": "answers"}, jupyter=False)
    assert "dog" in html and "ANSWER" in html
