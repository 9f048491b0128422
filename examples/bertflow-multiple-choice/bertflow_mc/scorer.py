"""The multiple-choice scorer ``bertflow_mc.scorer.v1`` (``mc_acc``) and the
grouping of candidates by question it shares with the component."""
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy
from spacy.training import Example
from spacy.util import registry


def question_groups(examples: Sequence[Example]) -> Dict[str, List[int]]:
    groups: Dict[str, List[int]] = OrderedDict()
    for i, eg in enumerate(examples):
        question = eg.reference._.mc_question
        if question is not None and eg.reference._.mc_label is not None:
            groups.setdefault(question, []).append(i)
    return groups


def mc_score(examples: Iterable[Example], **kwargs) -> Dict[str, Optional[float]]:
    """mc_acc: the share of questions whose highest-scoring candidate is the right one."""
    examples = list(examples)
    correct = total = 0
    for members in question_groups(examples).values():
        gold = [examples[i].reference._.mc_label for i in members]
        if gold.count(1.0) != 1:
            continue
        pred = [examples[i].predicted._.mc_score for i in members]
        if any(p is None for p in pred):
            continue
        total += 1
        correct += int(int(numpy.argmax(pred)) == gold.index(1.0))
    return {"mc_acc": correct / total if total else None}


@registry.scorers("bertflow_mc.scorer.v1")
def make_mc_scorer() -> Callable:
    return mc_score
