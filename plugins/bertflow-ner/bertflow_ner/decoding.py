"""Tag schemes and constrained (Viterbi) decoding that never yields an invalid
sequence: no I-X (or L-X) without a B-X before it, no B-X left open in BILUO."""
from typing import List, Sequence, Tuple

import numpy

from bertflow.api import ragged_range

SCHEMES = ("BIO", "BILUO")


def make_tags(labels: Sequence[str], scheme: str) -> List[str]:
    prefixes = "BI" if scheme == "BIO" else "BILU"
    return ["O"] + [f"{p}-{label}" for label in labels for p in prefixes]


def transitions(tags: Sequence[str], scheme: str) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Boolean masks: which tags may start, follow each tag, and end a sequence."""
    n = len(tags)
    kind = [t[0] for t in tags]
    label = [t[2:] for t in tags]
    start = numpy.array([k in ("O", "B", "U") for k in kind])
    end = numpy.array([k in ("O", "L", "U") if scheme == "BILUO" else True for k in kind])
    allowed = numpy.zeros((n, n), dtype=bool)
    for a in range(n):
        for b in range(n):
            inside_next = kind[b] in ("I", "L")
            if scheme == "BIO":
                ok = (not inside_next) or (kind[a] in ("B", "I") and label[a] == label[b])
            else:
                open_a = kind[a] in ("B", "I")
                ok = (inside_next and label[a] == label[b]) if open_a else not inside_next
            allowed[a, b] = ok
    return start, allowed, end


def viterbi(log_probs: numpy.ndarray, start: numpy.ndarray, allowed: numpy.ndarray, end: numpy.ndarray) -> List[int]:
    """Best tag sequence under the transition masks; log_probs has shape (n_tokens, n_tags)."""
    return viterbi_batch([log_probs], start, allowed, end)[0]


def viterbi_batch(
    log_probs: Sequence[numpy.ndarray], start: numpy.ndarray, allowed: numpy.ndarray, end: numpy.ndarray
) -> List[List[int]]:
    """``viterbi`` for a list of docs at once (see ``viterbi_ragged``)."""
    lengths = numpy.asarray([len(lp) for lp in log_probs], dtype="int64")
    if not len(lengths) or lengths.max() == 0:
        return [[] for _ in log_probs]
    flat = viterbi_ragged(numpy.concatenate([numpy.asarray(lp).reshape(-1, len(start)) for lp in log_probs]),
                          lengths, start, allowed, end)
    bounds = numpy.cumsum(lengths)
    return [flat[b - n: b].tolist() for b, n in zip(bounds, lengths)]


def viterbi_ragged(
    log_probs: numpy.ndarray, lengths: numpy.ndarray, start: numpy.ndarray, allowed: numpy.ndarray, end: numpy.ndarray
) -> numpy.ndarray:
    """Constrained Viterbi for a batch of docs whose token rows are
    concatenated in ``log_probs`` (shape (sum(lengths), n_tags)); RETURNS the
    best tag index of every row, each doc's path the same as decoding it alone.

    The transitions are allowed or not (no scores), so a valid path scores
    the sum of its tags' log-probabilities, which the per-token argmax
    maximises over all paths: where the argmax path of a doc is valid it is
    the answer, and only the other docs are decoded (for a trained model,
    few or none of a batch)."""
    lengths = numpy.asarray(lengths, dtype="int64")
    total = int(lengths.sum())
    if not total:
        return numpy.zeros((0,), dtype="int64")
    log_probs = numpy.asarray(log_probs, dtype="float64")
    best = log_probs.argmax(axis=1)
    live = numpy.nonzero(lengths)[0]
    first = (numpy.cumsum(lengths) - lengths)[live]
    last = first + lengths[live] - 1
    doc_of = numpy.repeat(numpy.arange(len(lengths)), lengths)
    bad = ~start[best[first]] | ~end[best[last]]
    broken = ~allowed[best[:-1], best[1:]] & (doc_of[:-1] == doc_of[1:])  # a forbidden step inside a doc
    redo = numpy.union1d(live[bad], doc_of[:-1][broken])
    if len(redo):
        rows = ragged_range((numpy.cumsum(lengths) - lengths)[redo], lengths[redo])
        best[rows] = _viterbi(log_probs[rows], lengths[redo], start, allowed, end)
    return best


def _viterbi(log_probs: numpy.ndarray, lengths: numpy.ndarray, start: numpy.ndarray, allowed: numpy.ndarray,
             end: numpy.ndarray) -> numpy.ndarray:
    """Viterbi over docs of positive ``lengths`` concatenated in
    ``log_probs``: one step per token position over every doc still that long
    (docs sorted longest first, so those are a prefix), a loop over the
    longest doc's tokens, not over all tokens of the batch."""
    total = int(lengths.sum())
    n_tags = len(start)
    batch, longest = len(lengths), int(lengths.max())
    neg = -1e30
    order = numpy.argsort(-lengths, kind="stable")
    by_len = lengths[order]
    doc_of = numpy.repeat(numpy.arange(batch), by_len)
    pos_of = numpy.arange(total) - numpy.repeat(numpy.cumsum(by_len) - by_len, by_len)
    src = numpy.repeat((numpy.cumsum(lengths) - lengths)[order], by_len) + pos_of
    padded = numpy.zeros((longest, batch, n_tags), dtype="float64")
    padded[pos_of, doc_of] = log_probs[src]
    trans = numpy.where(allowed, 0.0, neg).T.copy()  # (to, from): reductions run along the last axis
    running = (by_len[None, :] > numpy.arange(longest)[:, None]).sum(axis=1).tolist()
    score = numpy.where(start, padded[0], neg)  # (batch, tags)
    back = numpy.zeros((longest, batch, n_tags), dtype="int64")
    flat_rows = numpy.arange(batch * n_tags)
    cand_buffer = numpy.empty((batch * n_tags, n_tags), dtype="float64")  # (docs x to, from), reused every step
    for i in range(1, longest):
        k = running[i]
        cand = cand_buffer[: k * n_tags]
        numpy.add(score[:k, None, :], trans, out=cand.reshape(k, n_tags, n_tags))
        best_from = cand.argmax(axis=1)
        back[i, :k] = best_from.reshape(k, n_tags)
        # the best score is the one at the argmax: one reduction per step, not two
        numpy.add(cand[flat_rows[: k * n_tags], best_from].reshape(k, n_tags), padded[i, :k], out=score[:k])
    cur = numpy.where(end, score, neg).argmax(axis=1)
    paths = numpy.zeros((longest, batch), dtype="int64")
    docs = numpy.arange(batch)
    for i in range(longest - 1, 0, -1):
        paths[i] = cur  # beyond a doc's end this is its last tag, never read
        k = running[i]
        cur[:k] = back[i, docs[:k], cur[:k]]
    paths[0] = cur
    out = numpy.empty((total,), dtype="int64")
    out[src] = paths[pos_of, doc_of]
    return out
