"""Docs -> wordpieces, before windowing: one tokenizer call for a batch's
texts, one for their ``doc._.text_pair`` (``Tokenized``, one per doc)."""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc

from bertflow.errors import BertflowError, Errors


def _text_pair(doc: Doc) -> Optional[str]:
    pair = doc._.text_pair if doc.has_extension("text_pair") else None
    if pair is not None and not isinstance(pair, str):
        raise BertflowError(Errors.E013.format(type=type(pair).__name__, start=doc.text[:40]))
    return pair if pair is not None and pair.strip() else None  # an empty or blank pair is no pair


@dataclass
class Tokenized:
    """One doc's wordpieces before windowing: the ids and character offsets of
    its text, and the ids of its ``text_pair`` (None without one)."""

    ids: List[int]
    offsets: numpy.ndarray
    pair_ids: Optional[List[int]]

    def __len__(self) -> int:
        """Wordpieces of the text and its pair: what its rows are padded to."""
        return len(self.ids) + (len(self.pair_ids) if self.pair_ids is not None else 0)


def tokenize_docs(tokenizer, docs: Sequence[Doc], *, strict: bool = True) -> List[Optional[Tokenized]]:
    """Tokenize docs: one tokenizer call for their texts, one for their pairs.

    Docs with no tokens give None. A ``text_pair`` that is not a string is an
    error, or with ``strict=False`` gives None, left for the forward pass to
    report with its batch.
    """
    pairs = {}
    for i, doc in enumerate(docs):
        if len(doc):
            try:
                pairs[i] = _text_pair(doc)
            except BertflowError:
                if strict:
                    raise
    live = list(pairs)
    out: List[Optional[Tokenized]] = [None] * len(docs)
    if not live:
        return out
    ids, offsets = _encode_texts(tokenizer, [docs[i].text for i in live])
    pair_idx = [i for i in live if pairs[i] is not None]
    pair_ids = {}
    if pair_idx:
        pair_enc = tokenizer(
            [pairs[i] for i in pair_idx],
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        pair_ids = dict(zip(pair_idx, pair_enc["input_ids"]))
    for k, i in enumerate(live):
        out[i] = Tokenized(ids[k], numpy.asarray(offsets[k], dtype="int64").reshape(-1, 2), pair_ids.get(i))
    return out


def _encode_texts(tokenizer, texts: List[str]) -> Tuple[List[List[int]], list]:
    """Wordpiece ids and character offsets of ``texts``, without special
    tokens. A fast tokenizer's Rust backend is called directly when it has no
    truncation or padding configured (what the Python wrapper would turn off
    anyway): the wrapper's per-text conversion into Python dicts costs more
    than the tokenization itself."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        encodings = backend.encode_batch(texts, add_special_tokens=False)
        return [e.ids for e in encodings], [e.offsets for e in encodings]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False,
                    return_token_type_ids=False, verbose=False)
    return enc["input_ids"], enc["offset_mapping"]
