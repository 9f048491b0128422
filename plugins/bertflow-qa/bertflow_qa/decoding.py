"""Answer spans from start/end logits: the n best spans of at most
``max_answer_len`` tokens, and the no-answer ([CLS]) score to weigh them against."""
from dataclasses import dataclass
from typing import List, Optional

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
    n = logits.shape[0] - 1
    if n <= 0 or top_k <= 0:
        return []
    start_lp = log_softmax(logits[:, 0].astype("float64"))
    end_lp = log_softmax(logits[:, 1].astype("float64"))
    s, e = logits[1:, 0].astype("float64"), logits[1:, 1].astype("float64")
    width = min(max_answer_len, n)
    # band[i, k]: the span from token i to token i + k
    ends = numpy.arange(n)[:, None] + numpy.arange(width)[None, :]
    valid = ends < n
    ends_c = numpy.minimum(ends, n - 1)
    if allowed is not None:
        valid &= allowed[:, None] & allowed[ends_c]
    band = numpy.where(valid, s[:, None] + e[ends_c], -numpy.inf)
    flat = band.reshape(-1)
    k = min(top_k, int(valid.sum()))
    if k == 0:
        return []
    best = numpy.argpartition(-flat, k - 1)[:k] if k < flat.size else numpy.arange(flat.size)
    best = best[numpy.argsort(-flat[best], kind="stable")][:k]
    out = []
    for idx in best:
        i, j = divmod(int(idx), width)
        end = i + j
        out.append(SpanScore(i, end + 1, float(flat[idx]), float(numpy.exp(start_lp[1 + i] + end_lp[1 + end]))))
    return out


def null_scores(logits: numpy.ndarray) -> tuple:
    """(logit, probability) of no answer: start and end both at [CLS]."""
    start_lp = log_softmax(logits[:, 0].astype("float64"))
    end_lp = log_softmax(logits[:, 1].astype("float64"))
    return float(logits[0, 0] + logits[0, 1]), float(numpy.exp(start_lp[0] + end_lp[0]))
