"""Word-replacement augmentation for distillation: which words are swapped and
for what, that a variant keeps its source's tokens, spaces and pair text, and
that the distillation stream carries the variants beside their source
(``bertflow distill --augment`` end to end: tests/integration/test_distill.py)."""
import random

import pytest
import spacy
import torch
from spacy.training import Example

from bertflow.compress.augment import WordReplacer
from bertflow.compress.distill import shuffled_batches
from bertflow.errors import BertflowError

VOCAB = ["[PAD]", "[UNK]", "good", "great", "fine", "bad", "##s", "cat", "42", "über", "dog"]


class LowercasingTokenizer:
    """Just what the replacer asks of a Hugging Face tokenizer: its vocabulary
    and whether it lowercases."""

    def get_vocab(self):
        return {token: i for i, token in enumerate(VOCAB)}

    def tokenize(self, text):
        return [text.lower()]


def embeddings():
    """good's neighbours by cosine: great (0.99), fine (0.9), then bad; über sits
    nearest of all to good but is not ASCII; ##s and 42 are closer than bad."""
    rows = {"good": [1, 0, 0], "great": [0.99, 0.14, 0], "fine": [0.9, 0.44, 0], "bad": [0.5, 0.87, 0],
            "##s": [0.95, 0.3, 0], "42": [0.97, 0.2, 0], "über": [1, 0.01, 0], "cat": [0, 0, 1],
            "dog": [0, 0.1, 1]}
    return torch.tensor([rows.get(token, [0.0, -1.0, 0.0]) for token in VOCAB])


def test_candidates_are_the_nearest_whole_ascii_words_in_embedding_space():
    replacer = WordReplacer(LowercasingTokenizer(), embeddings(), k=3)
    assert replacer.candidates("good") == ["great", "fine", "bad"]  # not ##s, 42, über, nor good itself
    assert replacer.candidates("GOOD") == ["great", "fine", "bad"]  # an uncased vocabulary: looked up lowercased
    assert replacer.candidates("goods") == []  # more than one wordpiece: kept as it is
    assert replacer.candidates("über")[0] == "good"  # a non-ASCII word may draw any script
    assert replacer.candidates("cat")[0] == "dog"


def test_a_variant_keeps_tokens_spaces_case_and_the_pair_text():
    nlp = spacy.blank("en")
    if not spacy.tokens.Doc.has_extension("text_pair"):
        spacy.tokens.Doc.set_extension("text_pair", default=None)
    doc = nlp.make_doc("Good cat, GOOD 42 goods!  dog")
    doc._.text_pair = "is it good?"
    new = WordReplacer(LowercasingTokenizer(), embeddings(), prob=1.0, k=1).variant(doc, random.Random(0))
    assert len(new) == len(doc) and [t.whitespace_ for t in new] == [t.whitespace_ for t in doc]
    # every word of one wordpiece swapped for its nearest neighbour, in its casing; the rest kept
    assert [t.text for t in new] == ["Great", "dog", ",", "GREAT", "42", "goods", "!", " ", "cat"]
    assert new._.text_pair == "is it good?" and doc.text == "Good cat, GOOD 42 goods!  dog"  # the source is untouched


def test_variants_are_seeded_and_replace_at_the_given_rate():
    nlp = spacy.blank("en")
    doc = nlp.make_doc(" ".join(["good"] * 400))
    texts = [WordReplacer(LowercasingTokenizer(), embeddings(), prob=0.25, seed=3).variant(doc).text
             for _ in range(2)]
    assert texts[0] == texts[1]
    changed = sum(a != b for a, b in zip(texts[0].split(), doc.text.split()))
    assert 60 < changed < 140  # 400 words at 0.25
    with pytest.raises(BertflowError, match="0 < prob <= 1"):
        WordReplacer(LowercasingTokenizer(), embeddings(), prob=0.0)


def test_the_stream_carries_each_example_and_its_variants_without_gold():
    nlp = spacy.blank("en")
    texts = [f"doc {i}" for i in range(10)]

    def reader(nlp):
        for t in texts:
            ref = nlp.make_doc(t)
            ref.cats = {"A": 1.0}
            yield Example(nlp.make_doc(t), ref)

    def augment(eg):
        doc = nlp.make_doc(eg.predicted.text + " variant")
        return [Example(doc, doc.copy()), Example(doc.copy(), doc.copy())]

    stream = shuffled_batches(reader, nlp, batch_size=5, seed=0, buffer=100, augment=augment)
    seen = [eg for _ in range(6) for eg in next(stream)]
    assert sorted(eg.predicted.text for eg in seen) == sorted(texts + [t + " variant" for t in texts] * 2)
    assert all(not eg.reference.cats for eg in seen if eg.predicted.text.endswith("variant"))
