"""bertflow.batch_by_group.v1: batches of whole groups, from a finite epoch or a stream."""
import itertools

import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from bertflow.errors import BertflowError

if not Doc.has_extension("pair_id"):
    Doc.set_extension("pair_id", default=None)


def examples(n_pairs: int, singles_every: int = 3):
    """Pairs sharing ``doc._.pair_id`` (adjacent), with an ungrouped example after every ``singles_every`` pairs."""
    nlp = spacy.blank("en")
    for i in itertools.count() if n_pairs is None else range(n_pairs):
        for side in ("a", "b"):
            doc = nlp.make_doc(f"pair {i} {side}")
            doc._.pair_id = i
            yield Example(doc, doc)
        if i % singles_every == 0:
            doc = nlp.make_doc(f"single {i}")
            yield Example(doc, doc)


def make(**cfg):
    return registry.resolve({"b": {"@batchers": "bertflow.batch_by_group.v1", "group_attr": "pair_id", **cfg}})["b"]


def keys(batch):
    return [eg.reference._.pair_id if eg.reference._.pair_id is not None else eg.reference.text for eg in batch]


@pytest.mark.parametrize("buffer", [0, 7, 50])
def test_every_example_once_and_no_pair_split(buffer):
    given = list(examples(40))
    batches = list(make(size=4, buffer=buffer)(given))
    out = [eg for batch in batches for eg in batch]
    assert sorted(id(eg) for eg in out) == sorted(id(eg) for eg in given)
    assert all(len(set(keys(b))) == 4 for b in batches[:-1])  # size counts groups, not examples
    for batch in batches:
        pairs = [k for k in keys(batch) if isinstance(k, int)]
        assert all(pairs.count(k) == 2 for k in pairs), "a pair was split between batches"


def test_a_whole_epoch_keeps_far_apart_members_together():
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(f"d{i}") for i in range(10)]
    docs[0]._.pair_id = docs[9]._.pair_id = "far"
    batches = list(make(size=2)([Example(d, d) for d in docs]))
    assert [d.reference.text for d in batches[0]] == ["d0", "d9", "d1"]


def test_a_stream_yields_batches_with_a_buffer():
    # without a buffer the batcher would read the endless stream for ever before its first batch
    stream = make(size=8, buffer=64)(examples(None))
    first = list(itertools.islice(stream, 5))
    assert [len(set(keys(b))) for b in first] == [8] * 5
    for batch in first:
        pairs = [k for k in keys(batch) if isinstance(k, int)]
        assert all(pairs.count(k) == 2 for k in pairs)


def test_a_buffer_keeps_members_that_arrive_within_it_together():
    nlp = spacy.blank("en")
    docs = []
    for i in range(30):  # pair i's second member arrives at most 7 examples after its first (a3 b0 a4 b1 ...)
        doc = nlp.make_doc(f"a{i}")
        doc._.pair_id = i
        docs.append(doc)
        if i >= 3:
            doc = nlp.make_doc(f"b{i - 3}")
            doc._.pair_id = i - 3
            docs.append(doc)
    for i in range(27, 30):
        doc = nlp.make_doc(f"b{i}")
        doc._.pair_id = i
        docs.append(doc)
    batches = list(make(size=2, buffer=7)([Example(d, d) for d in docs]))
    assert sorted(k for b in batches for k in keys(b)) == sorted(list(range(30)) * 2)
    for batch in batches:
        assert all(keys(batch).count(k) == 2 for k in keys(batch)), f"a pair was split: {keys(batch)}"
    # one example less of buffer and the second members come too late: the bound is the buffer
    shorter = list(make(size=2, buffer=6)([Example(d, d) for d in docs]))
    assert any(keys(b).count(k) == 1 for b in shorter for k in keys(b))


def test_a_negative_buffer_is_a_one_line_error():
    with pytest.raises(BertflowError, match="E165.*buffer = -1") as err:
        make(size=8, buffer=-1)
    assert "\n" not in str(err.value)
