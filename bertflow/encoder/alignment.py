"""spaCy tokens <-> wordpieces: which wordpieces each token covers (by
character offsets, so a token of any length is aligned), for one doc or a
whole batch as flat arrays (``DocAligns``)."""
from typing import TYPE_CHECKING, List, Sequence, Tuple

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc
from thinc.types import Ragged

if TYPE_CHECKING:
    from bertflow.encoder.tokenize import Tokenized


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
