"""Answer spans from start/end logits: the n best spans of at most
``max_answer_len`` tokens, and the no-answer ([CLS]) score to weigh them against."""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy


@dataclass(frozen=True)
class SpanScore:
    start: int  # first token of the answer (doc token index)
    end: int  # one past its last token
    logit: float  # start logit + end logit
    prob: float  # p(start) * p(end), softmax over [CLS] and every token


def log_softmax(x: numpy.ndarray) -> numpy.ndarray:
    x = x - x.max()
    return x - numpy.log(numpy.exp(x).sum())


def best_spans(
    logits: numpy.ndarray,
    *,
    max_answer_len: int = 30,
    top_k: int = 1,
    allowed: Optional[numpy.ndarray] = None,
) -> List[SpanScore]:
    """The ``top_k`` best spans, best first.

    logits (numpy.ndarray): shape (1 + n_tokens, 2), start and end logits; row 0
        is [CLS] (never part of an answer).
    max_answer_len (int): longest answer, in tokens.
    allowed (Optional[numpy.ndarray]): bool per token; a span may neither start
        nor end on a token that is not allowed (whitespace tokens).
    """
    logits = numpy.asarray(logits)
    return batch_best_spans(logits, [len(logits)], max_answer_len=max_answer_len, top_k=[top_k],
                            allowed=allowed)[0]


def batch_best_spans(
    logits: numpy.ndarray,
    rows: Sequence[int],
    *,
    max_answer_len: int = 30,
    top_k: Sequence[int] = (1,),
    allowed: Optional[numpy.ndarray] = None,
) -> List[List[SpanScore]]:
    """``best_spans`` for a batch of docs at once: ``logits`` holds every doc's
    (1 + n_tokens, 2) rows one after another (``rows``: 1 + n_tokens per doc),
    ``top_k`` is per doc, ``allowed`` (optional) is every doc's tokens one after
    another. The docs are padded to the longest and searched together: a few
    array operations for the batch instead of a few per doc."""
    rows = numpy.asarray(rows, dtype="int64")
    n_docs = len(rows)
    n = numpy.maximum(rows - 1, 0)  # tokens per doc
    longest = int(n.max()) if n_docs else 0
    top_k = numpy.asarray(top_k, dtype="int64")
    if longest == 0 or not (top_k > 0).any():
        return [[] for _ in range(n_docs)]
    start_lp, end_lp, s, e = _padded_log_probs(numpy.asarray(logits, dtype="float64"), rows, longest)
    width = min(max_answer_len, longest)
    # band[d, i, k]: doc d's span from token i to token i + k
    ends = numpy.arange(longest)[:, None] + numpy.arange(width)[None, :]
    ends_c = numpy.minimum(ends, longest - 1)
    valid = ends[None] < n[:, None, None]
    if allowed is not None:
        ok = numpy.zeros((n_docs, longest), dtype=bool)
        ok[numpy.arange(longest)[None, :] < n[:, None]] = numpy.asarray(allowed, dtype=bool)
        valid &= ok[:, :, None] & ok[:, ends_c]
    band = numpy.where(valid, s[:, :, None] + e[:, ends_c], -numpy.inf).reshape(n_docs, -1)
    k = numpy.minimum(top_k, valid.reshape(n_docs, -1).sum(axis=1))
    k_max = int(k.max())
    if k_max == 0:
        return [[] for _ in range(n_docs)]
    best = (numpy.argpartition(-band, k_max - 1, axis=1)[:, :k_max] if k_max < band.shape[1]
            else numpy.broadcast_to(numpy.arange(band.shape[1]), band.shape))
    best = numpy.take_along_axis(best, numpy.argsort(-numpy.take_along_axis(band, best, axis=1), axis=1, kind="stable"),
                                 axis=1)[:, :k_max]
    first, offset = numpy.divmod(best, width)
    last = first + offset
    docs = numpy.arange(n_docs)[:, None]
    logit = numpy.take_along_axis(band, best, axis=1)
    # (a doc's entries past its own k may be invalid band cells, beyond the doc: clipped, then dropped)
    prob = numpy.exp(start_lp[docs, 1 + first] + end_lp[docs, 1 + numpy.minimum(last, longest - 1)])
    out = []
    for d, k_d in enumerate(k.tolist()):
        out.append([SpanScore(i, j + 1, lg, p) for i, j, lg, p in
                    zip(first[d, :k_d].tolist(), last[d, :k_d].tolist(), logit[d, :k_d].tolist(), prob[d, :k_d].tolist())])
    return out


def _padded_log_probs(logits: numpy.ndarray, rows: numpy.ndarray, longest: int):
    """Per doc: start and end log-probabilities over its rows ([CLS] and its
    tokens) and its tokens' start and end logits, padded to ``longest``
    tokens with -inf."""
    n_docs = len(rows)
    padded = numpy.full((n_docs, longest + 1, 2), -numpy.inf)
    doc_of = numpy.repeat(numpy.arange(n_docs), rows)
    padded[doc_of, numpy.arange(len(doc_of)) - numpy.repeat(numpy.cumsum(rows) - rows, rows)] = logits
    top = padded.max(axis=1, keepdims=True)
    top = numpy.where(numpy.isfinite(top), top, 0.0)
    total = numpy.exp(padded - top).sum(axis=1, keepdims=True)
    # a doc without rows is all -inf: its log-probabilities stay -inf (nothing is read from them)
    log_probs = padded - (top + numpy.log(numpy.where(total > 0, total, 1.0)))
    return log_probs[:, :, 0], log_probs[:, :, 1], padded[:, 1:, 0], padded[:, 1:, 1]


def null_scores(logits: numpy.ndarray) -> tuple:
    """(logit, probability) of no answer: start and end both at [CLS]."""
    logits = numpy.asarray(logits)
    logit, prob = batch_null_scores(logits, [len(logits)])
    return float(logit[0]), float(prob[0])


def batch_null_scores(logits: numpy.ndarray, rows: Sequence[int]) -> tuple:
    """``null_scores`` of every doc of a batch laid out as for
    ``batch_best_spans``: (logits, probabilities), one entry per doc."""
    rows = numpy.asarray(rows, dtype="int64")
    logits = numpy.asarray(logits, dtype="float64").reshape(-1, 2)
    if not len(logits):
        return numpy.zeros((len(rows),)), numpy.ones((len(rows),))
    first = numpy.minimum(numpy.cumsum(rows) - rows, len(logits) - 1)
    start_lp, end_lp, _, _ = _padded_log_probs(logits, rows, int(max(rows.max() - 1, 0)))
    none = rows == 0  # a doc without rows: no answer for certain
    return (numpy.where(none, 0.0, logits[first, 0] + logits[first, 1]),
            numpy.where(none, 1.0, numpy.exp(start_lp[:, 0] + end_lp[:, 0])))
