"""Pearson and Spearman correlation (scipy.stats) and the two scorers."""
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy
from spacy.training import Example
from spacy.util import registry


def _defined(x: Sequence[float], y: Sequence[float]):
    """The two series as float arrays, or None when a correlation is undefined
    (fewer than two values, or a constant series)."""
    x, y = numpy.asarray(x, dtype="float64"), numpy.asarray(y, dtype="float64")
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return None
    return x, y


def pearson(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    from scipy.stats import pearsonr

    pair = _defined(x, y)
    return None if pair is None else float(pearsonr(*pair)[0])


def spearman(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Spearman's rho, ties ranked by their average (``scipy.stats.spearmanr``)."""
    from scipy.stats import spearmanr

    pair = _defined(x, y)
    return None if pair is None else float(spearmanr(*pair)[0])


def complete_pairs(examples: List[Example]) -> List[List[int]]:
    """Indices of each complete scored pair: the two examples sharing a sim_group."""
    groups: Dict[str, List[int]] = {}
    for i, eg in enumerate(examples):
        if eg.reference._.sim_group is not None and eg.reference._.sim_score is not None:
            groups.setdefault(eg.reference._.sim_group, []).append(i)
    return [members for members in groups.values() if len(members) == 2]


def bi_encoder_pairs(examples: List[Example]) -> List[tuple]:
    """(gold score, predicted cosine) for each complete pair (two docs sharing sim_group)."""
    out = []
    for pair in complete_pairs(examples):
        members = [examples[i] for i in pair]
        a, b = (eg.predicted._.sim_vector for eg in members)
        if a is None or b is None:
            continue
        out.append((float(members[0].reference._.sim_score), float(numpy.dot(a, b))))
    return out


def similarity_score(examples: Iterable[Example], **kwargs) -> Dict[str, Optional[float]]:
    """sim_spearman / sim_pearson of the bi-encoder's cosine against the gold pair scores."""
    pairs = bi_encoder_pairs(list(examples))
    gold, pred = [g for g, _ in pairs], [p for _, p in pairs]
    return {"sim_spearman": spearman(gold, pred), "sim_pearson": pearson(gold, pred)}


def pair_score(examples: Iterable[Example], **kwargs) -> Dict[str, Optional[float]]:
    """pair_spearman / pair_pearson of the cross-encoder's scores (regression),
    or pair_acc and pair_macro_f (classification: doc.cats)."""
    examples = list(examples)
    examples = [eg for eg in examples if eg.reference._.text_pair is not None]  # pair docs only
    reg = [(float(eg.reference._.sim_score), eg.predicted._.pair_score) for eg in examples
           if eg.reference._.sim_score is not None and eg.predicted._.pair_score is not None]
    out: Dict[str, Optional[float]] = {}
    if reg:
        gold, pred = [g for g, _ in reg], [p for _, p in reg]
        out.update(pair_spearman=spearman(gold, pred), pair_pearson=pearson(gold, pred))
    cls = [eg for eg in examples if eg.reference.cats and eg.predicted.cats]
    if cls:
        gold = [max(eg.reference.cats, key=eg.reference.cats.get) for eg in cls]
        pred = [max(eg.predicted.cats, key=eg.predicted.cats.get) for eg in cls]
        out["pair_acc"] = sum(g == p for g, p in zip(gold, pred)) / len(cls)
        f1s = []
        for label in sorted(set(gold) | set(pred)):
            tp = sum(g == label == p for g, p in zip(gold, pred))
            fp = sum(p == label != g for g, p in zip(gold, pred))
            fn = sum(g == label != p for g, p in zip(gold, pred))
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        out["pair_macro_f"] = sum(f1s) / len(f1s)
    return out


@registry.scorers("bertflow.similarity_scorer.v1")
def make_similarity_scorer() -> Callable:
    return similarity_score


@registry.scorers("bertflow.pair_scorer.v1")
def make_pair_scorer() -> Callable:
    return pair_score
