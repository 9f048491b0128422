"""Losses that honour "missing annotation is not a negative".

A head builds a mask with ``annotation_mask``: 1 for examples whose reference
doc carries its annotation, 0 otherwise. Masked rows give no loss and zero
gradient, so one corpus can mix datasets and each head learns only from the
examples that carry its labels. Within a row, a NaN target marks a single
missing value (e.g. one unknown label of a multi-label set).
"""
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import numpy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import get_array_module
from thinc.types import Floats1d, Floats2d


# the batch-wide counters in force (data-parallel training installs one for its run)
_COUNTERS: List[Callable[[float], Optional[float]]] = []


def loss_denominator(count: float) -> float:
    """What a head's loss divides by when it averages over ``count`` units.

    In one process: ``max(count, 1)``. While data-parallel training runs an
    update: the count summed over every rank's share, over the number of
    ranks, so that averaging the ranks' gradients gives exactly the gradient
    of the mean over the whole batch. A head calls it once per ``get_loss``
    (the bundled losses do); the ranks meet there, so every rank must call it
    the same number of times per update.
    """
    if _COUNTERS:
        total = _COUNTERS[-1](float(count))
        if total is not None:
            return total
    return max(float(count), 1.0)


@contextmanager
def batch_wide_counts(counter: Callable[[float], Optional[float]]) -> Iterator[None]:
    """For the block, ``loss_denominator`` asks ``counter(count)`` first: the
    batch-wide denominator, or None outside an update (then the count is used)."""
    _COUNTERS.append(counter)
    try:
        yield
    finally:
        _COUNTERS.remove(counter)


def annotation_mask(examples: Iterable[Example], has_annotation: Callable[[Doc], bool]) -> Floats1d:
    """1.0 for each example whose reference carries the annotation, else 0.0."""
    return numpy.asarray([1.0 if has_annotation(eg.reference) else 0.0 for eg in examples], dtype="f")


def _row_mask(truths, mask):
    xp = get_array_module(truths)
    valid = ~xp.isnan(truths)
    if mask is not None:
        valid &= xp.asarray(mask, dtype="f").reshape(-1, *([1] * (truths.ndim - 1))) > 0
    return xp, valid


def softmax_cross_entropy(probs: Floats2d, truths: Floats2d, mask: Optional[Floats1d] = None) -> Tuple[float, Floats2d]:
    """Cross-entropy for softmax outputs with one-hot (or soft) ``truths``.

    Returns the mean loss over annotated rows and d_scores w.r.t. the softmax
    *inputs* (thinc's Softmax backprop expects ``probs - truths``)."""
    xp, valid = _row_mask(truths, mask)
    rows = valid.all(axis=1)
    n = loss_denominator(int(rows.sum()))
    safe = xp.where(valid, truths, 0.0)
    d = (probs - safe) * rows[:, None] / n
    loss = float(-(safe * xp.log(xp.clip(probs, 1e-9, 1.0)))[rows].sum() / n)
    return loss, d.astype("f")


def binary_cross_entropy(probs: Floats2d, truths: Floats2d, mask: Optional[Floats1d] = None) -> Tuple[float, Floats2d]:
    """Per-label BCE for sigmoid outputs; NaN truths and masked rows are skipped.
    d_scores is w.r.t. the sigmoid *inputs* (``probs - truths``)."""
    xp, valid = _row_mask(truths, mask)
    n = loss_denominator(int(valid.any(axis=1).sum()))
    safe = xp.where(valid, truths, 0.0)
    p = xp.clip(probs, 1e-7, 1 - 1e-7)
    loss = -(safe * xp.log(p) + (1 - safe) * xp.log(1 - p))
    d = xp.where(valid, probs - safe, 0.0) / n
    return float(loss[valid].sum() / n), d.astype("f")


def mean_squared_error(preds: Floats2d, truths: Floats2d, mask: Optional[Floats1d] = None) -> Tuple[float, Floats2d]:
    """MSE for regression heads, with the same masking rules."""
    xp, valid = _row_mask(truths, mask)
    n = loss_denominator(int(valid.sum()))
    diff = xp.where(valid, preds - xp.where(valid, truths, 0.0), 0.0)
    return float((diff ** 2).sum() / n), (2 * diff / n).astype("f")


# ---- distillation: a student head matching a teacher head's outputs ------------------------------------

DISTILL_ACTIVATIONS = ("softmax", "sigmoid", "logits")


def soft_target_loss(student: Floats2d, teacher: Floats2d, *, temperature: float = 1.0, activation: str = "softmax",
                     mask: Optional[Floats1d] = None) -> Tuple[float, Floats2d]:
    """Knowledge-distillation loss of a student head against its teacher's
    outputs for the same inputs: ``T² · KL(teacher_T ‖ student_T)``, mean over
    the rows ``mask`` keeps (Hinton et al. 2015; DistilBERT).

    student, teacher (Floats2d): the heads' outputs, one row per prediction:
        probabilities ("softmax": a distribution per row; "sigmoid": independent
        labels) or "logits" (a softmax over each row). Probabilities are turned
        back into logits (``log p`` for a softmax, ``log p/(1-p)`` for a sigmoid),
        so softening by ``temperature`` is exact: ``softmax(log p / T)`` is
        ``softmax(z / T)``.
    temperature (float): T > 1 spreads both distributions, so the student also
        learns the teacher's ranking of the wrong classes.
    Returns the loss and its gradient w.r.t. the student's *logits*
    (``T · (q_student - q_teacher)``), what the heads' output layers take
    (the same convention as ``softmax_cross_entropy``). Identical outputs
    give 0 and a zero gradient.
    """
    if activation not in DISTILL_ACTIVATIONS:
        raise ValueError(f"soft_target_loss: activation must be one of {', '.join(DISTILL_ACTIVATIONS)}, "
                         f"not {activation!r}")
    if temperature <= 0:
        raise ValueError(f"soft_target_loss: temperature must be > 0, not {temperature}")
    xp = get_array_module(student)
    s = xp.asarray(student, dtype="float64")
    t = xp.asarray(teacher, dtype="float64")
    if s.shape != t.shape:
        raise ValueError(f"soft_target_loss: student outputs {s.shape} and teacher outputs {t.shape} differ in "
                         f"shape; the two heads must have the same labels.")
    rows = xp.ones((s.shape[0],), dtype="bool") if mask is None else xp.asarray(mask).reshape(-1) > 0
    n = loss_denominator(int(rows.sum()))
    if activation == "sigmoid":
        zs, zt = _logit(xp, s) / temperature, _logit(xp, t) / temperature
        qs, qt = 1.0 / (1.0 + xp.exp(-zs)), 1.0 / (1.0 + xp.exp(-zt))
        kl = (qt * (_log_sigmoid(xp, zt) - _log_sigmoid(xp, zs))
              + (1 - qt) * (_log_sigmoid(xp, -zt) - _log_sigmoid(xp, -zs))).sum(axis=1)
    else:
        if activation == "softmax":
            s, t = xp.log(xp.clip(s, 1e-12, 1.0)), xp.log(xp.clip(t, 1e-12, 1.0))
        ls, lt = _log_softmax(xp, s / temperature), _log_softmax(xp, t / temperature)
        qs, qt = xp.exp(ls), xp.exp(lt)
        kl = (qt * (lt - ls)).sum(axis=1)
    kl = xp.maximum(kl, 0.0)  # rounding can make an exact match a hair below 0
    scale = temperature ** 2
    loss = float(scale * kl[rows].sum() / n)
    d = temperature * (qs - qt) * rows[:, None] / n
    return loss, d.astype("f")


def cosine_distance_loss(student: Floats2d, teacher: Floats2d, mask: Optional[Floats1d] = None
                         ) -> Tuple[float, Floats2d]:
    """Mean ``1 - cos(student_i, teacher_i)`` over the rows ``mask`` keeps, and
    its gradient w.r.t. ``student``: for vectors whose direction is what counts
    (sentence embeddings compared by cosine; DistilBERT's hidden-state loss)."""
    xp = get_array_module(student)
    s = xp.asarray(student, dtype="float64")
    t = xp.asarray(teacher, dtype="float64")
    if s.shape != t.shape:
        raise ValueError(f"cosine_distance_loss: student {s.shape} and teacher {t.shape} differ in shape.")
    rows = xp.ones((s.shape[0],), dtype="bool") if mask is None else xp.asarray(mask).reshape(-1) > 0
    n = loss_denominator(int(rows.sum()))
    norm_s = xp.maximum(xp.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    u_s, u_t = s / norm_s, t / xp.maximum(xp.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    cos = (u_s * u_t).sum(axis=1, keepdims=True)
    loss = float((1.0 - cos[rows, 0]).sum() / n)
    d = -(u_t - cos * u_s) / norm_s * rows[:, None] / n
    return loss, d.astype("f")


def _log_softmax(xp, z):
    z = z - z.max(axis=1, keepdims=True)
    return z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))


def _logit(xp, p):
    p = xp.clip(p, 1e-7, 1 - 1e-7)
    return xp.log(p) - xp.log1p(-p)


def _log_sigmoid(xp, z):
    return -xp.logaddexp(0.0, -z)
