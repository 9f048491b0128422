"""Chinese end to end on a tiny Chinese-vocabulary BERT: every built-in head
(textcat, NER, QA, similarity, masked LM) on ``spacy.blank("zh")`` with the
``char`` and the ``jieba`` segmenter. BERT's Chinese vocabulary is characters,
so a jieba word is several wordpieces and a ``char`` token exactly one."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

import bertflow
from bertflow.api import tiny_encoder_config, write_tiny_bert

SEGMENTERS = ["char", "jieba"]
NER_SENTS = [("乔布斯在加州创立了苹果公司。", [(0, 3, "PER"), (4, 6, "LOC"), (9, 13, "ORG")]),
             ("他们在北京爱上海。", [(3, 5, "LOC"), (6, 8, "LOC")])]


@pytest.fixture(scope="module")
def zh_bert(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("zh") / "bert", dropout=0.0, chinese=True)


def zh_nlp(zh_bert, segmenter, *heads):
    if segmenter == "jieba":
        pytest.importorskip("jieba")
    nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": segmenter}}})
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(zh_bert))
    for factory, config in heads:
        nlp.add_pipe(factory, config=config)
    return nlp


def fit(nlp, examples, steps, lr=5e-3):
    fix_random_seed(0)
    nlp.initialize(lambda: examples)
    optimizer = Adam(lr)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)


@pytest.mark.parametrize("segmenter", SEGMENTERS)
def test_tokens_align_to_characters(zh_bert, segmenter):
    nlp = zh_nlp(zh_bert, segmenter)
    nlp.initialize()
    doc = nlp("乔布斯在加州创立了苹果公司。")
    align = doc._.trf_data.align
    assert list(align.lengths) == [len(t.text) for t in doc]  # one wordpiece per character, never [UNK]
    strings = doc._.trf_data.wordpieces.strings[0][1:-1]
    assert "".join(strings) == doc.text and "[UNK]" not in strings


@pytest.mark.parametrize("segmenter", SEGMENTERS)
def test_ner_offsets_slice_the_text(zh_bert, segmenter):
    nlp = zh_nlp(zh_bert, segmenter, ("bertflow_ner", {"model": {"dropout": 0.0}}))
    examples = []
    for text, ents in NER_SENTS:
        ref = nlp.make_doc(text)
        ref.set_ents([ref.char_span(s, e, label=label, alignment_mode="strict") for s, e, label in ents],
                     default="outside")
        examples.append(Example(nlp.make_doc(text), ref))
    fit(nlp, examples, 80)
    for text, ents in NER_SENTS:
        doc = nlp(text)
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == ents
        assert all(text[e.start_char: e.end_char] == e.text for e in doc.ents)


@pytest.mark.parametrize("segmenter", SEGMENTERS)
def test_textcat(zh_bert, segmenter):
    nlp = zh_nlp(zh_bert, segmenter, ("bertflow_textcat", {"model": {"dropout": 0.0}}))
    examples = [Example.from_dict(nlp.make_doc(text), {"cats": {"POS": float(pos), "NEG": float(not pos)}})
                for text, pos in (("电影非常精彩", True), ("电影非常糟糕", False))]
    fit(nlp, examples, 40)
    assert nlp("电影非常精彩").cats["POS"] > 0.8 and nlp("电影非常糟糕").cats["NEG"] > 0.8


@pytest.mark.slow
@pytest.mark.parametrize("segmenter", SEGMENTERS)
def test_qa_answers_slice_the_context(zh_bert, segmenter):
    nlp = zh_nlp(zh_bert, segmenter, ("bertflow_qa", {"model": {"dropout": 0.0}}))
    context = "乔布斯在加州创立了苹果公司。"
    questions = [("谁创立了苹果公司？", 0, 3), ("苹果公司在哪里创立？", 4, 6)]
    examples = []
    for question, start, end in questions:
        ref = nlp.make_doc(context)
        ref._.text_pair = question
        span = ref.char_span(start, end, alignment_mode="strict")
        ref.spans["answers"] = SpanGroup(ref, name="answers", spans=[span], attrs={"texts": [span.text]})
        pred = nlp.make_doc(context)
        pred._.text_pair = question
        examples.append(Example(pred, ref))
    fit(nlp, examples, 80, lr=3e-3)
    for question, start, end in questions:
        answers = bertflow.ask(nlp, question, context, top_k=3)
        assert (answers[0].start_char, answers[0].end_char) == (start, end)
        assert all(context[a.start_char: a.end_char] == a.text for a in answers)


@pytest.mark.parametrize("segmenter", SEGMENTERS)
def test_similarity(zh_bert, segmenter):
    nlp = zh_nlp(zh_bert, segmenter, ("bertflow_similarity", {}))
    nlp.initialize()
    a, b, c = nlp("电影非常精彩"), nlp("电影非常精彩"), nlp("乔布斯在加州")
    import numpy

    def cosine(u, v):
        return float(numpy.dot(u, v) / (numpy.linalg.norm(u) * numpy.linalg.norm(v)))

    assert a.similarity(b) == pytest.approx(1.0, abs=1e-5)
    assert a.similarity(c) == pytest.approx(cosine(a.vector, c.vector), abs=1e-5)
    assert a.similarity(c) < a.similarity(b) - 1e-4  # another sentence is less similar than the same one
    span = a[:2]  # spans too: their own vector, not the doc's
    assert span.similarity(c) == pytest.approx(cosine(span.vector, c.vector), abs=1e-5)
    assert not numpy.allclose(span.vector, a.vector)


@pytest.mark.slow
@pytest.mark.parametrize("segmenter", SEGMENTERS)
def test_masked_lm_learns_chinese_with_whole_words(zh_bert, segmenter):
    nlp = zh_nlp(zh_bert, segmenter, ("bertflow_mlm", {"whole_word": True}))
    examples = []
    for text in ("乔布斯在加州创立了苹果公司。", "他们在北京爱上海。") * 8:
        predicted = nlp.make_doc(text)
        reference = predicted.copy()
        reference._.raw_text = True
        examples.append(Example(predicted, reference))
    fit(nlp, examples, 60, lr=3e-3)
    mlm = nlp.get_pipe("bertflow_mlm")
    assert mlm.score(examples)["mlm_acc"] > 0.5
    # a masked jieba word is masked as a whole: the loss is per character
    encoder = nlp.get_pipe("encoder")
    docs = [eg.predicted for eg in examples]
    _, corrupted = encoder.training_inputs(examples, docs)
    for i in corrupted:
        c = mlm._pending[id(docs[i])]
        chars = set(c.doc_index.tolist())
        for token in docs[i]:
            span = set(range(token.idx, token.idx + len(token.text)))
            assert span <= chars or not (span & chars), token.text
