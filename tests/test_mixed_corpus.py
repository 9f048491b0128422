"""bertflow.MixedCorpus.v1: corpora of different sizes mixed by a configurable sampling."""
from collections import Counter

import pytest
import spacy
from spacy.tokens import DocBin

from bertflow.data.corpus import create_mixed_corpus, mixing_probabilities
from bertflow.errors import BertflowError


def write_corpus(path, prefix, n):
    nlp = spacy.blank("en")
    DocBin(docs=[nlp.make_doc(f"{prefix} {i}") for i in range(n)]).to_disk(path)
    return path


@pytest.fixture
def corpora(tmp_path):
    return {"big": write_corpus(tmp_path / "big.spacy", "big", 90), "small": write_corpus(tmp_path / "small.spacy", "small", 10)}


def test_mixing_probabilities():
    sizes = {"big": 90, "small": 10}
    assert mixing_probabilities(sizes, "proportional") == pytest.approx({"big": 0.9, "small": 0.1})
    assert mixing_probabilities(sizes, "uniform") == pytest.approx({"big": 0.5, "small": 0.5})
    t2 = mixing_probabilities(sizes, "temperature", 2.0)  # sqrt: 9.49 vs 3.16
    assert t2["small"] == pytest.approx(10 ** 0.5 / (90 ** 0.5 + 10 ** 0.5))
    assert mixing_probabilities(sizes, "temperature", 1.0) == pytest.approx(mixing_probabilities(sizes, "proportional"))
    with pytest.raises(BertflowError, match="Unknown sampling"):
        mixing_probabilities(sizes, "random")
    with pytest.raises(BertflowError, match="temperature must be > 0"):
        mixing_probabilities(sizes, "temperature", 0.0)


def origin(eg):
    return eg.reference.text.split()[0]


@pytest.mark.parametrize("sampling,small_share", [("proportional", 0.1), ("temperature", 0.25), ("uniform", 0.5)])
def test_sampling_follows_the_strategy(corpora, sampling, small_share):
    nlp = spacy.blank("en")
    reader = create_mixed_corpus(corpora, sampling=sampling, temperature=2.0, epoch_size=4000, seed=1)
    counts = Counter(origin(eg) for eg in reader(nlp))
    assert sum(counts.values()) == 4000
    assert counts["small"] / 4000 == pytest.approx(small_share, abs=0.03)


def test_small_corpus_repeats_every_example_before_any_twice(corpora):
    nlp = spacy.blank("en")
    drawn = [eg.reference.text for eg in create_mixed_corpus(corpora, sampling="uniform", epoch_size=40, seed=3)(nlp)]
    small = [t for t in drawn if t.startswith("small")]
    assert len(set(small[:10])) == min(10, len(small))  # a full reshuffled pass before a repeat


def test_concat_reads_everything_once_and_default_epoch_size(corpora):
    nlp = spacy.blank("en")
    texts = [eg.reference.text for eg in create_mixed_corpus(corpora, sampling="concat")(nlp)]
    assert texts == [f"big {i}" for i in range(90)] + [f"small {i}" for i in range(10)]
    sampled = list(create_mixed_corpus(corpora, sampling="temperature", seed=0)(nlp))
    assert len(sampled) == 100  # epoch_size 0: the total size
    again = list(create_mixed_corpus(corpora, sampling="temperature", seed=0)(nlp))
    assert [eg.reference.text for eg in sampled] == [eg.reference.text for eg in again]  # seeded


def test_bad_settings(corpora):
    with pytest.raises(BertflowError, match="no corpus paths"):
        create_mixed_corpus({"a": None})
    with pytest.raises(BertflowError, match="Unknown sampling"):
        create_mixed_corpus(corpora, sampling="roundrobin")


def test_limit_reads_the_first_examples_of_each_corpus(corpora):
    nlp = spacy.blank("en")
    texts = [eg.reference.text for eg in create_mixed_corpus(corpora, sampling="concat", limit=3)(nlp)]
    assert texts == ["big 0", "big 1", "big 2", "small 0", "small 1", "small 2"]


def test_a_corpus_is_read_from_disk_once_and_each_pass_gets_fresh_examples(corpora, monkeypatch):
    """Every pass (each head's initialize, each epoch, each evaluation) builds
    new examples from the reference docs read the first time."""
    from spacy.training import Corpus
    from bertflow.data.corpus import create_corpus_reader

    reads = []
    original = Corpus.read_docbin
    monkeypatch.setattr(Corpus, "read_docbin", lambda self, vocab, locs: reads.append(1) or original(self, vocab, locs))
    nlp = spacy.blank("en")
    read = create_corpus_reader(corpora["small"])
    first, second = list(read(nlp)), list(read(nlp))
    assert len(reads) == 1
    assert [eg.reference.text for eg in first] == [eg.reference.text for eg in second] == [f"small {i}" for i in range(10)]
    assert all(a.predicted is not b.predicted and a.reference is b.reference for a, b in zip(first, second))
    first[0].predicted.cats["X"] = 1.0  # what a pass does to its examples stays in that pass
    assert list(read(nlp))[0].predicted.cats == {}
    list(read(spacy.blank("en")))  # another pipeline (vocab) reads the file again
    assert len(reads) == 2
