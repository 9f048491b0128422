"""BERT's masking, applied to the wordpieces the encoder receives in training.

A share (``probability``, 15 %) of a doc's wordpieces is selected; of those,
``mask_rate`` (80 %) become [MASK], ``random_rate`` (10 %) a random
vocabulary wordpiece and the rest stay as they are; the head predicts the
original wordpiece at every selected position. Special wordpieces ([CLS],
[SEP], [PAD], [UNK], [MASK] — the tokenizer's ``all_special_ids``) are never
selected; the pair's wordpieces (``doc._.text_pair``) only with ``mask_pair``.

With ``whole_word`` the unit of selection is the spaCy token (a word of the
language's tokenizer): a selected word has all its wordpieces selected, and
they get one treatment together (all [MASK], all random, or all kept), so a
word is never half visible. Selection is a coin per unit (word or
wordpiece), so over a corpus the selected share of wordpieces is
``probability`` either way.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc

from bertflow.api import BertflowError, Tokenized, wordpiece_words

from .errors import Errors


@dataclass(frozen=True)
class Masking:
    probability: float = 0.15
    mask_rate: float = 0.8
    random_rate: float = 0.1
    whole_word: bool = False
    mask_pair: bool = False

    def __post_init__(self):
        if not 0.0 < self.probability <= 1.0:
            raise BertflowError(Errors.MLM002.format(probability=self.probability))
        if self.mask_rate < 0 or self.random_rate < 0 or self.mask_rate + self.random_rate > 1.0 + 1e-9:
            raise BertflowError(
                Errors.MLM003.format(mask_rate=self.mask_rate, random_rate=self.random_rate))


@dataclass
class Corruption:
    """What masking did to one doc: its corrupted wordpieces and the targets.

    tokenized (Tokenized): the doc's wordpieces as the encoder receives them.
    doc_index (numpy.ndarray): positions (into the doc's own wordpieces) to
        predict, ascending.
    doc_labels (numpy.ndarray): the original wordpiece id at each.
    pair_index / pair_labels: the same for the pair's wordpieces (empty
        unless ``mask_pair``).
    """

    tokenized: Tokenized
    doc_index: numpy.ndarray
    doc_labels: numpy.ndarray
    pair_index: numpy.ndarray
    pair_labels: numpy.ndarray

    @property
    def n_targets(self) -> int:
        return len(self.doc_index) + len(self.pair_index)


class Vocabulary:
    """The ids masking needs from a tokenizer: [MASK], the special ids and the
    ids a random replacement is drawn from (every non-special wordpiece)."""

    def __init__(self, tokenizer):
        if tokenizer.mask_token_id is None:
            raise BertflowError(
                Errors.MLM004.format(type_name=type(tokenizer).__name__))
        self.mask_id = int(tokenizer.mask_token_id)
        self.special = numpy.asarray(sorted(set(tokenizer.all_special_ids)), dtype="int64")
        size = int(tokenizer.vocab_size)
        self.replacements = numpy.setdiff1d(numpy.arange(size, dtype="int64"), self.special)


def _mask_units(ids: numpy.ndarray, units: numpy.ndarray, masking: Masking, vocab: Vocabulary,
                rng: numpy.random.Generator) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Mask ``ids`` whose ``units`` (word of each wordpiece; -1 = not selectable)
    come up: returns (corrupted ids, selected positions, original ids there)."""
    ids = numpy.asarray(ids, dtype="int64")
    selectable = (units >= 0) & ~numpy.isin(ids, vocab.special)
    if not selectable.any():
        return ids, numpy.zeros((0,), dtype="int64"), numpy.zeros((0,), dtype="int64")
    unit_ids, inverse = numpy.unique(units[selectable], return_inverse=True)
    # per unit: selected? then one draw for its treatment: [MASK] / random / keep
    chosen = rng.random(len(unit_ids)) < masking.probability
    treatment = rng.random(len(unit_ids))
    where = numpy.nonzero(selectable)[0]
    picked = chosen[inverse]
    positions = where[picked]
    kind = treatment[inverse][picked]
    corrupted = ids.copy()
    corrupted[positions[kind < masking.mask_rate]] = vocab.mask_id
    randomised = positions[(kind >= masking.mask_rate) & (kind < masking.mask_rate + masking.random_rate)]
    if len(randomised):
        corrupted[randomised] = vocab.replacements[rng.integers(0, len(vocab.replacements), len(randomised))]
    return corrupted, positions, ids[positions]


def mask_doc(doc: Doc, tokenized: Tokenized, masking: Masking, vocab: Vocabulary,
             rng: numpy.random.Generator) -> Corruption:
    """Corrupt one doc's wordpieces (and, with ``mask_pair``, its pair's)."""
    ids = numpy.asarray(tokenized.ids, dtype="int64")
    if masking.whole_word:
        units = wordpiece_words(doc, tokenized)
    else:
        units = numpy.arange(len(ids), dtype="int64")
    doc_ids, doc_index, doc_labels = _mask_units(ids, units, masking, vocab, rng)
    pair_ids: Optional[List[int]] = tokenized.pair_ids
    empty = numpy.zeros((0,), dtype="int64")
    pair_index, pair_labels = empty, empty
    if masking.mask_pair and pair_ids:
        # the pair is plain text without spaCy tokens: its wordpieces are its units
        # (whole words would need a second tokenization of the pair)
        p = numpy.asarray(pair_ids, dtype="int64")
        new_pair, pair_index, pair_labels = _mask_units(p, numpy.arange(len(p)), masking, vocab, rng)
        pair_ids = new_pair.tolist()
    corrupted = Tokenized(doc_ids.tolist(), tokenized.offsets, pair_ids)
    return Corruption(corrupted, doc_index, doc_labels, pair_index, pair_labels)


def mask_docs(docs: Sequence[Doc], tokenized: Sequence[Optional[Tokenized]], masking: Masking, vocab: Vocabulary,
              rng: numpy.random.Generator) -> List[Optional[Corruption]]:
    """``mask_doc`` for each doc with wordpieces (None for the others)."""
    return [None if tok is None else mask_doc(doc, tok, masking, vocab, rng) for doc, tok in zip(docs, tokenized)]
