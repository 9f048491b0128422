"""Tag schemes and constrained (Viterbi) decoding that never yields an invalid
sequence: no I-X (or L-X) without a B-X before it, no B-X left open in BILUO."""
from typing import List, Sequence, Tuple

import numpy

SCHEMES = ("BIO", "BILUO")


def make_tags(labels: Sequence[str], scheme: str) -> List[str]:
    prefixes = "BI" if scheme == "BIO" else "BILU"
    return ["O"] + [f"{p}-{label}" for label in labels for p in prefixes]


def biluo_to_scheme(tag: str, scheme: str) -> str:
    """Map one of spaCy's BILUO tags to the head's scheme (BIO: U->B, L->I)."""
    if scheme == "BIO" and tag[:2] in ("U-", "L-"):
        return ("B-" if tag[0] == "U" else "I-") + tag[2:]
    return tag


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
    n, t = log_probs.shape
    if n == 0:
        return []
    neg = -1e30
    trans = numpy.where(allowed, 0.0, neg)
    score = numpy.where(start, log_probs[0], neg)
    back = numpy.zeros((n, t), dtype="int64")
    for i in range(1, n):
        cand = score[:, None] + trans  # (from, to)
        back[i] = cand.argmax(axis=0)
        score = cand.max(axis=0) + log_probs[i]
    score = numpy.where(end, score, neg)
    path = [int(score.argmax())]
    for i in range(n - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return path[::-1]


def tags_to_spans(tags: Sequence[str]) -> List[Tuple[int, int, str]]:
    """(start, end, label) token spans from a valid BIO or BILUO sequence."""
    spans, begin, label = [], None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        kind, lab = tag[0], tag[2:]
        if begin is not None and (kind in ("O", "B", "U") or lab != label):
            spans.append((begin, i, label))
            begin = None
        if kind in ("B", "U") or (kind in ("I", "L") and begin is None):
            begin, label = i, lab
        if kind in ("L", "U"):
            spans.append((begin, i + 1, label))
            begin = None
    return spans
