"""Rows of a batch grouped by length, so that short rows are not padded to
long ones: the training pass's buckets, inference's where the encoder can't
run padding-free, and padding-free attention's."""
from typing import List, Sequence


def length_buckets(lengths: Sequence[int], min_rows: int = 4, ratio: float = 2.0) -> List[List[int]]:
    """Row indices grouped so that rows of very different lengths are not
    padded to each other: sorted by length, a new group starts where a row is
    more than ``ratio`` times (twice by default) as long as the group's
    shortest row and the group has ``min_rows`` rows (so a few odd lengths do
    not cost a call each). A mixed multitask batch (SQuAD contexts of ~200
    wordpieces next to SST-2 sentences of ~20) would otherwise pad every
    sentence to the context.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: List[List[int]] = []
    for i in order:
        if groups and (lengths[i] <= ratio * lengths[groups[-1][0]] or len(groups[-1]) < min_rows):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
