"""Losses that honour "missing annotation is not a negative".

A head builds a mask with ``annotation_mask``: 1 for examples whose reference
doc carries its annotation, 0 otherwise. Masked rows give no loss and zero
gradient, so one corpus can mix datasets and each head learns only from the
examples that carry its labels. Within a row, a NaN target marks a single
missing value (e.g. one unknown label of a multi-label set).
"""
from typing import Callable, Iterable, Optional, Tuple

import numpy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import get_array_module
from thinc.types import Floats1d, Floats2d

from ..distributed import loss_denominator


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
