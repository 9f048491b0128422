"""Strided, overlapping windows over a document's wordpieces.

The windowing is over *wordpieces*, not spaCy tokens, so one spaCy token that
splits into thousands of wordpieces (CJK without spaces, URLs, base64) is
spread over several windows instead of overflowing one.
"""
from dataclasses import dataclass
from typing import Callable, List

import numpy
from spacy.util import registry

from bertflow.errors import BertflowError, Errors


@dataclass(frozen=True)
class WindowPlan:
    """How one document's wordpieces are cut into windows.

    starts (List[int]): start (in doc wordpieces) of each window.
    size (int): wordpieces per window (the last one may be shorter only when
        the doc is shorter than one window).
    owner (numpy.ndarray): for each doc wordpiece, the window where it sits
        most centrally; its vector comes from that window.
    """

    starts: List[int]
    size: int
    owner: numpy.ndarray

    @property
    def n_windows(self) -> int:
        return len(self.starts)

    def end(self, i: int, n_wordpieces: int) -> int:
        return min(self.starts[i] + self.size, n_wordpieces)


def check_window(window: int, stride: int) -> None:
    if window <= 0 or stride <= 0 or stride > window:
        raise BertflowError(Errors.E007.format(window=window, stride=stride))


def plan_windows(n_wordpieces: int, window: int, stride: int) -> WindowPlan:
    """Cut ``n_wordpieces`` into windows of ``window`` wordpieces, one starting
    every ``stride``; the last window is aligned to the end so that every window
    is full. Each wordpiece is owned by the window where its distance to the
    nearer edge is largest (ties: the earlier window).
    """
    if window <= 0 or stride <= 0 or stride > window:
        raise BertflowError(Errors.E007.format(window=window, stride=stride))
    if n_wordpieces <= window:
        return WindowPlan([0], window, numpy.zeros((n_wordpieces,), dtype="int32"))
    starts = list(range(0, n_wordpieces - window + 1, stride))
    if starts[-1] + window < n_wordpieces:
        starts.append(n_wordpieces - window)
    return WindowPlan(starts, window, window_owners(n_wordpieces, starts, window))


def window_owners(n_wordpieces: int, starts, window: int) -> numpy.ndarray:
    """For each wordpiece, the window (index into ``starts``) where its
    distance to the nearer edge is largest (ties: the earlier window)."""
    positions = numpy.arange(n_wordpieces)
    starts_arr = numpy.asarray(starts)
    # margin[w, j]: distance of wordpiece j to the nearer edge of window w (-1 outside)
    left = positions[None, :] - starts_arr[:, None]
    right = starts_arr[:, None] + window - 1 - positions[None, :]
    margin = numpy.minimum(left, right)
    margin[(left < 0) | (right < 0)] = -1
    return margin.argmax(axis=0).astype("int32")


def wordpiece_positions(windows: dict) -> numpy.ndarray:
    """Where each of a doc's own wordpieces sits in its encoder output: an
    int array (n_wordpieces, 2) of (row, position) within the doc's rows, the
    row being the window that owns the wordpiece (as for token alignment).
    ``windows`` is the doc's ``doc._.trf_windows``; a pair's wordpieces sit
    at positions 1..pair_wordpieces of every row."""
    n = int(windows["n_wordpieces"])
    starts = list(windows["starts"])
    rows = window_owners(n, starts, int(windows["window"])) if len(starts) > 1 else numpy.zeros((n,), dtype="int32")
    starts_arr = numpy.asarray(starts, dtype="int64")
    pos = int(windows["doc_offset"]) + numpy.arange(n) - starts_arr[rows]
    return numpy.stack([rows.astype("int64"), pos], axis=1)


def scale_stride(window: int, stride: int, budget: int) -> tuple:
    """Shrink (window, stride) to fit ``budget`` wordpieces, keeping their ratio."""
    if budget >= window:
        return window, stride
    budget = max(1, budget)
    return budget, max(1, min(budget, round(budget * stride / window)))


@dataclass(frozen=True)
class StridedWindows:
    """A picklable windowing strategy: ``(n_wordpieces, budget) -> WindowPlan``."""

    window: int
    stride: int

    def __post_init__(self):
        check_window(self.window, self.stride)

    def __call__(self, n_wordpieces: int, budget: int) -> WindowPlan:
        w, s = scale_stride(self.window, self.stride, budget)
        return plan_windows(n_wordpieces, w, s)


@registry.misc("bertflow.strided_windows.v1")
def strided_windows(window: int = 256, stride: int = 192) -> Callable[[int, int], WindowPlan]:
    """Windowing strategy for ``bertflow.Encoder.v1``.

    window (int): doc wordpieces per window (special tokens and a text pair come
        on top; the window shrinks to fit the model's maximum length, keeping
        the stride/window ratio). Default 256.
    stride (int): step between window starts, so ``window - stride`` wordpieces
        overlap. Default 192.
    RETURNS (Callable[[int, int], WindowPlan]): maps (n_wordpieces, budget) to a plan.
    """
    return StridedWindows(window, stride)
