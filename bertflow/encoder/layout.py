"""Docs -> padded wordpiece rows, for ``bertflow.Encoder.v1``.

Each doc is tokenized once, as a whole, with character offsets
(``tokenize.py``); its wordpieces are cut into windows (``windows.py``); each
row is ``[CLS] doc-window [SEP]`` or, with ``doc._.text_pair``,
``[CLS] pair [SEP] doc-window [SEP]``. Every spaCy token is aligned to its
wordpieces in the window that owns them (``alignment.py``), so tokens of any
length get vectors and nothing of the doc is cut.
"""
import warnings
import weakref
from dataclasses import dataclass
from itertools import chain
from typing import Callable, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc
from spacy_transformers.data_classes import WordpieceBatch

from bertflow.encoder.alignment import DocAligns, flat_token_alignments, token_alignment
from bertflow.encoder.tokenize import Tokenized
from bertflow.encoder.windows import WindowPlan
from bertflow.errors import Errors


@dataclass
class DocRows:
    """The rows one doc contributes to a batch, before padding."""

    input_ids: List[List[int]]
    token_type_ids: List[List[int]]
    # (row, position) of each aligned wordpiece, grouped per spaCy token
    align_rows: numpy.ndarray
    align_pos: numpy.ndarray
    align_lengths: numpy.ndarray
    windows: dict


def encode_doc(
    doc: Doc,
    ids: Sequence[int],
    offsets: numpy.ndarray,
    pair_ids: Optional[Sequence[int]],
    *,
    cls_id: int,
    sep_id: int,
    max_length: int,
    max_pair_length: int,
    get_windows: Callable[[int, int], WindowPlan],
    alignment: Optional[Tuple[numpy.ndarray, numpy.ndarray]] = None,
) -> DocRows:
    """Lay one doc (and its optional pair) out as windowed rows with token
    alignment (``alignment``: the doc's ``token_alignment``, computed when None)."""
    n = len(ids)
    pair_truncated = False
    prefix: List[int] = [cls_id]
    if pair_ids is not None:
        if len(pair_ids) > max_pair_length:
            warnings.warn(
                Errors.W003.format(
                    n=len(pair_ids), kept=max_pair_length, max_len=max_length, start=doc.text[:40]
                )
            )
            pair_ids = list(pair_ids)[:max_pair_length]
            pair_truncated = True
        prefix = [cls_id, *pair_ids, sep_id]
    budget = max_length - len(prefix) - 1
    plan = get_windows(n, budget)
    segment = 1 if pair_ids is not None else 0
    wp_of, lengths = alignment if alignment is not None else token_alignment(doc, offsets)
    offset = len(prefix)
    align_rows = numpy.zeros(wp_of.shape, dtype="int64")
    if plan.n_windows == 1 and plan.starts[0] == 0 and n <= plan.size:  # most docs: one row, no array work
        body = list(ids)
        rows = [prefix + body + [sep_id]]
        types = [[0] * offset + [segment] * (n + 1)]
        # wordpiece -1 (a doc whose text yields no wordpieces) points at [CLS] of row 0
        align_pos = numpy.where(wp_of >= 0, wp_of + offset, 0)
    else:
        ids_arr = numpy.asarray(ids, dtype="int64")
        rows, types = [], []
        for w in range(plan.n_windows):
            start, end = plan.starts[w], plan.end(w, n)
            body = ids_arr[start:end].tolist()
            rows.append(prefix + body + [sep_id])
            types.append([0] * offset + [segment] * (len(body) + 1))
        known = wp_of >= 0  # -1 (no wordpieces): [CLS] of row 0
        align_pos = numpy.zeros(wp_of.shape, dtype="int64")
        align_rows[known] = plan.owner[wp_of[known]]
        starts = numpy.asarray(plan.starts, dtype="int64")
        align_pos[known] = offset + wp_of[known] - starts[align_rows[known]]
    windows = windows_entry(plan.starts, plan.size, n, offset, len(pair_ids) if pair_ids is not None else 0,
                            pair_truncated)
    return DocRows(rows, types, align_rows, align_pos, lengths, windows)


def windows_entry(starts: Sequence[int], size: int, n_wordpieces: int, doc_offset: int, pair_wordpieces: int = 0,
                  pair_truncated: bool = False) -> dict:
    """A doc's ``doc._.trf_windows``: how its wordpieces were cut into rows."""
    return {
        "n_windows": len(starts),
        "n_wordpieces": n_wordpieces,
        "window": size,
        "stride": (starts[1] - starts[0]) if len(starts) > 1 else size,
        "starts": tuple(map(int, starts)),
        "doc_offset": doc_offset,
        "pair_wordpieces": pair_wordpieces,
        "pair_truncated": pair_truncated,
        "truncated": pair_truncated,
    }


def layout_docs(
    tokenizer,
    docs: List[Doc],
    tokenized: List[Optional[Tokenized]],
    *,
    max_length: int,
    max_pair_length: int,
    get_windows: Callable[[int, int], WindowPlan],
) -> Tuple[WordpieceBatch, List[Tuple[int, int]], "DocAligns", List[Optional[dict]]]:
    """Lay a batch out as padded rows from its ``tokenized`` wordpieces (from
    ``tokenize_docs``, one per doc; None: a doc with no tokens, which takes no
    rows).

    A doc without a pair that fits one window (most docs) is one row,
    ``[CLS] wordpieces [SEP]``: those rows and their alignments are written
    for the whole batch with a few array operations. The others (windowed,
    or with a ``text_pair``) go through ``encode_doc``.

    RETURNS: the WordpieceBatch (rows padded to the longest one), each doc's
    (first row, n rows), the docs' alignments (``DocAligns``) and each doc's
    windows dict (``doc._.trf_windows``; None for a doc with no rows).
    """
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id  # each a lookup in HF: once a batch
    live = [i for i, tok in enumerate(tokenized) if tok is not None]
    wp_local, token_lengths, n_entries, n_tokens = flat_token_alignments(
        [docs[i] for i in live], [tokenized[i].offsets for i in live])
    entry_start, tok_start = numpy.cumsum(n_entries) - n_entries, numpy.cumsum(n_tokens) - n_tokens
    budget = max_length - 2
    one_window: dict = {}  # wordpiece count -> the window size when such a doc is one plain window, else 0
    encoded: List[Optional[DocRows]] = [None] * len(docs)
    windows: List[Optional[dict]] = [None] * len(docs)
    simple: List[int] = []  # positions in ``live`` of the one-row docs
    for k, i in enumerate(live):
        tok = tokenized[i]
        n = len(tok.ids)
        if tok.pair_ids is None:
            size = one_window.get(n)
            if size is None:
                plan = get_windows(n, budget)
                size = one_window[n] = plan.size if plan.n_windows == 1 and plan.starts[0] == 0 and n <= plan.size else 0
            if size:
                simple.append(k)
                windows[i] = windows_entry((0,), size, n, 1)
                continue
        e0, t0 = int(entry_start[k]), int(tok_start[k])
        encoded[i] = encode_doc(
            docs[i], tok.ids, tok.offsets, tok.pair_ids, cls_id=cls_id, sep_id=sep_id, max_length=max_length,
            max_pair_length=max_pair_length, get_windows=get_windows,
            alignment=(wp_local[e0: e0 + int(n_entries[k])], token_lengths[t0: t0 + int(n_tokens[k])]))
        windows[i] = encoded[i].windows
    simple_set = set(simple)
    # rows, in doc order: a one-row doc's has len(ids) + 2 wordpieces
    row_lengths: List[int] = []
    n_doc_rows = [0] * len(docs)
    for k, i in enumerate(live):
        if k in simple_set:
            row_lengths.append(len(tokenized[i].ids) + 2)
            n_doc_rows[i] = 1
        else:
            row_lengths.extend(len(row) for row in encoded[i].input_ids)
            n_doc_rows[i] = len(encoded[i].input_ids)
    starts = numpy.cumsum(n_doc_rows) - n_doc_rows
    seq_len = max(row_lengths, default=0)
    input_ids, token_type_ids, attention_mask = _padded(tokenizer, row_lengths, seq_len)
    if simple:  # [CLS] ids [SEP] for every one-row doc at once
        docs_rows = starts[[live[k] for k in simple]]
        n_ids = numpy.asarray([len(tokenized[live[k]].ids) for k in simple], dtype="int64")
        ids = numpy.fromiter(chain.from_iterable(tokenized[live[k]].ids for k in simple), dtype="int64",
                             count=int(n_ids.sum()))
        within = numpy.arange(len(ids)) - numpy.repeat(numpy.cumsum(n_ids) - n_ids, n_ids)
        input_ids[numpy.repeat(docs_rows, n_ids), within + 1] = ids
        input_ids[docs_rows, 0] = cls_id
        input_ids[docs_rows, n_ids + 1] = sep_id
    # an aligned wordpiece of a one-row doc sits at 1 + its index in row 0; -1 (a doc whose text
    # yields no wordpieces) points at [CLS]; the other docs' alignments come from encode_doc
    local = numpy.where(wp_local >= 0, wp_local + 1, 0)
    for k, i in enumerate(live):
        if encoded[i] is not None:
            d, e0 = encoded[i], int(entry_start[k])
            _fill_rows(input_ids, token_type_ids, int(starts[i]), d)
            local[e0: e0 + len(d.align_rows)] = d.align_rows * seq_len + d.align_pos
    batch = WordpieceBatch(
        strings=_row_strings(tokenizer, input_ids, row_lengths),
        input_ids=input_ids,
        attention_mask=attention_mask,
        lengths=row_lengths,
        token_type_ids=token_type_ids,
    )
    live_entries = numpy.full((len(docs),), -1, dtype="int64")
    live_tokens = numpy.zeros((len(docs),), dtype="int64")
    live_entries[live], live_tokens[live] = n_entries, n_tokens
    aligns = DocAligns(local, token_lengths, live_entries, live_tokens)
    return batch, list(zip(starts.tolist(), n_doc_rows)), aligns, windows


def _padded(tokenizer, row_lengths: List[int], seq_len: int) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Padding-filled input ids, zero token types and the attention mask for rows of these lengths."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n_rows = len(row_lengths)
    input_ids = numpy.full((n_rows, seq_len), pad_id, dtype="int64")
    token_type_ids = numpy.zeros((n_rows, seq_len), dtype="int64")
    lengths = numpy.asarray(row_lengths, dtype="int64")
    attention_mask = (numpy.arange(seq_len)[None, :] < lengths[:, None]).astype("float32")
    return input_ids, token_type_ids, attention_mask


def _fill_rows(input_ids: numpy.ndarray, token_type_ids: numpy.ndarray, first: int, doc_rows: DocRows) -> None:
    for r, (ids, types) in enumerate(zip(doc_rows.input_ids, doc_rows.token_type_ids)):
        input_ids[first + r, : len(ids)] = ids
        token_type_ids[first + r, : len(types)] = types


_VOCAB_STRINGS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _id_to_string(tokenizer) -> numpy.ndarray:
    """The strings of the tokenizer's base vocabulary by id (an object array,
    so a batch's strings are one gather), kept while the tokenizer lives
    (tokens added later have higher ids and are looked up one by one;
    ``len(tokenizer)``, which counts them, is slow to call per batch)."""
    vocab = _VOCAB_STRINGS.get(tokenizer)
    if vocab is None:
        vocab = _VOCAB_STRINGS[tokenizer] = numpy.empty((tokenizer.vocab_size,), dtype=object)
        vocab[:] = tokenizer.convert_ids_to_tokens(list(range(tokenizer.vocab_size)))
    return vocab


def _row_strings(tokenizer, input_ids: numpy.ndarray, row_lengths: List[int]) -> List[List[str]]:
    """Each row's wordpiece strings (without padding)."""
    if not len(row_lengths):
        return []
    vocab = _id_to_string(tokenizer)
    if int(input_ids.max()) < len(vocab):
        return [row[:n] for row, n in zip(vocab[input_ids].tolist(), row_lengths)]
    return [tokenizer.convert_ids_to_tokens(row[:n]) for row, n in zip(input_ids.tolist(), row_lengths)]
