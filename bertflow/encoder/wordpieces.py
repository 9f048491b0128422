"""Docs -> padded wordpiece rows and token alignment, for ``bertflow.Encoder.v1``.

Each doc is tokenized once, as a whole, with character offsets; its wordpieces
are cut into windows (see ``windows.py``); each row is
``[CLS] doc-window [SEP]`` or, with ``doc._.text_pair``,
``[CLS] pair [SEP] doc-window [SEP]``. Every spaCy token is aligned to its
wordpieces in the window that owns them, so tokens of any length get vectors
and nothing of the doc is cut.
"""
import warnings
import weakref
from itertools import chain
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc
from spacy_transformers.data_classes import WordpieceBatch
from thinc.types import Ragged

from bertflow.errors import BertflowError, Errors
from bertflow.encoder.windows import WindowPlan


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


def _text_pair(doc: Doc) -> Optional[str]:
    pair = doc._.text_pair if doc.has_extension("text_pair") else None
    if pair is not None and not isinstance(pair, str):
        raise BertflowError(Errors.E013.format(type=type(pair).__name__, start=doc.text[:40]))
    return pair if pair is not None and pair.strip() else None  # an empty or blank pair is no pair


def _char_to_token(doc: Doc) -> numpy.ndarray:
    """For each character of ``doc.text`` (and one past the end), the index of
    the spaCy token that covers it, or -1 (whitespace between tokens)."""
    n_tokens = len(doc)
    bounds = doc.to_array([IDX, LENGTH]).astype("int64").reshape(-1, 2)
    lengths_chars = bounds[:, 1]
    n_chars = int(bounds[-1].sum()) if n_tokens else 0
    char2tok = numpy.full((n_chars + 1,), -1, dtype="int64")
    # char position -> token, vectorised: each token covers [idx, idx + length)
    owner = numpy.repeat(numpy.arange(n_tokens), lengths_chars)
    within = numpy.arange(len(owner)) - numpy.repeat(numpy.cumsum(lengths_chars) - lengths_chars, lengths_chars)
    char2tok[numpy.repeat(bounds[:, 0], lengths_chars) + within] = owner
    return char2tok


def wordpiece_words(doc: Doc, tokenized: "Tokenized") -> numpy.ndarray:
    """The spaCy token each of the doc's own wordpieces belongs to (int array,
    one entry per wordpiece of ``tokenized.ids``): the token of its first
    character, or -1 for a wordpiece with no characters of the text. Whole-word
    masking groups wordpieces by it, so a "word" is whatever the language's
    tokenizer calls one (an English word, a jieba word of Chinese characters)."""
    offsets = tokenized.offsets
    if not len(offsets):
        return numpy.zeros((0,), dtype="int64")
    char2tok = _char_to_token(doc)
    starts, ends = offsets[:, 0], offsets[:, 1]
    return numpy.where(ends > starts, char2tok[numpy.minimum(starts, len(char2tok) - 1)], -1)


def token_alignment(doc: Doc, offsets: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Map the doc's wordpieces (char ``offsets``, shape (n, 2)) to spaCy tokens.

    RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): ``wp_index`` (wordpiece index
    of each alignment pair, grouped by token) and ``lengths`` (pairs per token).
    A wordpiece overlapping two tokens aligns to both. A token with no
    wordpiece of its own (whitespace, zero-width or control characters) takes
    the nearest wordpiece before it (after it at the doc start), so every
    token has a vector; a doc with no wordpieces at all gives ``wp_index = -1``
    (the caller points those at [CLS]).
    """
    return token_alignments([doc], [offsets])[0]


def token_alignments(docs: Sequence[Doc], offsets: Sequence[numpy.ndarray]) -> List[Tuple[numpy.ndarray, numpy.ndarray]]:
    """``token_alignment`` for many docs in one vectorised pass: the docs'
    characters, tokens and wordpieces are numbered one after another, so one
    set of array operations serves the whole batch; a token only ever takes a
    wordpiece of its own doc."""
    wp_local, lengths, per_doc, n_tok = flat_token_alignments(docs, offsets)
    entry_start, tok_base = numpy.cumsum(per_doc) - per_doc, numpy.cumsum(n_tok) - n_tok
    return [(wp_local[e0: e0 + n], lengths[t0: t0 + k])
            for e0, n, t0, k in zip(entry_start.tolist(), per_doc.tolist(), tok_base.tolist(), n_tok.tolist())]


def flat_token_alignments(
    docs: Sequence[Doc], offsets: Sequence[numpy.ndarray]
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """``token_alignments`` kept flat: every doc's ``wp_index`` one after
    another, every doc's ``lengths`` one after another, and per doc its
    number of entries and of tokens (to cut them apart)."""
    n_docs = len(docs)
    bounds = [doc.to_array([IDX, LENGTH]).astype("int64").reshape(-1, 2) for doc in docs]
    n_tok = numpy.asarray([len(b) for b in bounds], dtype="int64")
    n_chars = numpy.asarray([int(b[-1].sum()) + 1 if len(b) else 1 for b in bounds], dtype="int64")  # + one past the end
    offsets = [numpy.asarray(o, dtype="int64").reshape(-1, 2) for o in offsets]
    n_wp = numpy.asarray([len(o) for o in offsets], dtype="int64")
    tok_base, char_base, wp_base = (numpy.cumsum(a) - a for a in (n_tok, n_chars, n_wp))
    total_tok = int(n_tok.sum())
    # char -> global token (-1: whitespace between tokens); each token covers [idx, idx + length)
    char2tok = numpy.full((int(n_chars.sum()),), -1, dtype="int64")
    if total_tok:
        all_bounds = numpy.concatenate(bounds)
        tok_doc = numpy.repeat(numpy.arange(n_docs), n_tok)
        lengths_chars = all_bounds[:, 1]
        owner = numpy.repeat(numpy.arange(total_tok), lengths_chars)
        within = numpy.arange(len(owner)) - numpy.repeat(numpy.cumsum(lengths_chars) - lengths_chars, lengths_chars)
        char2tok[numpy.repeat(all_bounds[:, 0] + char_base[tok_doc], lengths_chars) + within] = owner
    else:
        tok_doc = numpy.zeros((0,), dtype="int64")
    total_wp = int(n_wp.sum())
    tok_of = numpy.zeros((0,), dtype="int64")
    wp_of = numpy.zeros((0,), dtype="int64")
    if total_wp:
        wp_doc = numpy.repeat(numpy.arange(n_docs), n_wp)
        all_off = numpy.concatenate(offsets)
        base = char_base[wp_doc]
        starts, ends = all_off[:, 0], all_off[:, 1]
        nonempty = ends > starts
        first = numpy.where(nonempty, char2tok[starts + base], -1)
        last = numpy.where(nonempty, char2tok[numpy.maximum(ends - 1, 0) + base], -1)
        simple = nonempty & (first == last) & (first >= 0)
        idx = numpy.nonzero(simple)[0]
        pairs_tok, pairs_wp = [first[idx]], [idx]
        for j in numpy.nonzero(nonempty & ~simple)[0]:  # rare: crosses a token boundary
            toks = numpy.unique(char2tok[starts[j] + base[j]: ends[j] + base[j]])
            toks = toks[toks >= 0]
            pairs_tok.append(toks)
            pairs_wp.append(numpy.full(toks.shape, j))
        tok_of, wp_of = numpy.concatenate(pairs_tok), numpy.concatenate(pairs_wp)
        order = numpy.lexsort((wp_of, tok_of))
        tok_of, wp_of = tok_of[order], wp_of[order]
    lengths = numpy.bincount(tok_of, minlength=total_tok).astype("int32")
    has = lengths > 0
    if not has.all():
        # a token without wordpieces takes the nearest one before it in its doc, else the next one
        first_wp = numpy.full((total_tok,), -1, dtype="int64")
        last_wp = numpy.full((total_tok,), -1, dtype="int64")
        ends_ = numpy.cumsum(lengths)
        first_wp[has] = wp_of[(ends_ - lengths)[has]]
        last_wp[has] = wp_of[(ends_ - 1)[has]]
        arange = numpy.arange(total_tok)
        prev = numpy.maximum.accumulate(numpy.where(has, arange, -1))
        nxt = numpy.minimum.accumulate(numpy.where(has, arange, total_tok)[::-1])[::-1]
        doc_first, doc_end = tok_base[tok_doc], (tok_base + n_tok)[tok_doc]
        fill = numpy.full((total_tok,), -1, dtype="int64")
        use_prev = (~has) & (prev >= doc_first)
        fill[use_prev] = last_wp[prev[use_prev]]
        use_next = (~has) & ~use_prev & (nxt < doc_end)
        fill[use_next] = first_wp[nxt[use_next]]
        missing = numpy.nonzero(~has)[0]
        tok_of = numpy.concatenate([tok_of, missing])
        wp_of = numpy.concatenate([wp_of, fill[missing]])
        order = numpy.lexsort((wp_of, tok_of))
        tok_of, wp_of = tok_of[order], wp_of[order]
        lengths = numpy.bincount(tok_of, minlength=total_tok).astype("int32")
    # back to each doc's own numbering (-1 stays -1: a doc without wordpieces)
    entry_doc = tok_doc[tok_of] if len(tok_of) else numpy.zeros((0,), dtype="int64")
    wp_local = numpy.where(wp_of >= 0, wp_of - wp_base[entry_doc], -1)
    per_doc = (numpy.bincount(tok_doc, weights=lengths, minlength=n_docs).astype("int64") if total_tok
               else numpy.zeros((n_docs,), dtype="int64"))
    return wp_local, lengths, per_doc, n_tok


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


class DocAligns(Sequence):
    """The docs' alignments in a batch (what ``layout_docs`` returns): item d is
    doc d's ``Ragged`` of flat indices into its own (rows * seq_len) outputs,
    grouped by token, or None for a doc without rows. Kept as flat arrays for
    the whole batch (``local``: every doc's indices one after another;
    ``token_lengths``: entries per token), so the encoder's output store and
    the batch alignment are built with a few array operations; a doc's own
    Ragged is made only when something asks for it."""

    def __init__(self, local: numpy.ndarray, token_lengths: numpy.ndarray, n_entries: Sequence[int],
                 n_tokens: Sequence[int]):
        self.local = numpy.asarray(local, dtype="int64")
        self.token_lengths = numpy.asarray(token_lengths, dtype="int64")
        n_entries = numpy.asarray(n_entries, dtype="int64")
        self.live = n_entries >= 0  # -1: a doc without rows
        self.n_entries = numpy.maximum(n_entries, 0)
        self.n_tokens = numpy.asarray(n_tokens, dtype="int64")
        self.ent_start = numpy.cumsum(self.n_entries) - self.n_entries
        self.tok_start = numpy.cumsum(self.n_tokens) - self.n_tokens

    def __len__(self) -> int:
        return len(self.live)

    def __getitem__(self, d):
        if isinstance(d, slice):
            return [self[i] for i in range(*d.indices(len(self)))]
        if not self.live[d]:
            return None
        e0, t0 = int(self.ent_start[d]), int(self.tok_start[d])
        return Ragged(self.local[e0: e0 + int(self.n_entries[d])].astype("int32"),
                      self.token_lengths[t0: t0 + int(self.n_tokens[d])].astype("int32"))
