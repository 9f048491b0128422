"""Text classification scores in spaCy's conventions (``cats_*`` keys), plus
accuracy and per-label thresholds."""
from typing import Callable, Dict, Iterable, List, Optional

from spacy.scorer import Scorer
from spacy.training import Example
from spacy.util import registry


def _is_on(score: float, label: str, threshold: float, thresholds: Dict[str, float]) -> bool:
    return score >= thresholds.get(label, threshold)


def textcat_score(
    examples: Iterable[Example],
    *,
    labels: List[str],
    multi_label: bool,
    threshold: float = 0.5,
    thresholds: Optional[Dict[str, float]] = None,
) -> Dict[str, object]:
    """Score ``doc.cats`` against the reference over the examples that carry cats.

    Returns spaCy's ``cats_*`` keys (``cats_score``, ``cats_macro_p/r/f``,
    ``cats_micro_p/r/f``, ``cats_f_per_type``, ``cats_macro_auc``,
    ``cats_auc_per_type``) and ``cats_acc``: for exclusive classes the share of
    docs whose top label is the gold one; for multi-label the share whose set
    of labels over threshold equals the gold set. Per-label ``thresholds``
    override ``threshold`` for P/R/F and accuracy.
    """
    thresholds = dict(thresholds or {})
    annotated = [eg for eg in examples if eg.reference.cats]
    scores = Scorer.score_cats(annotated, "cats", labels=labels, multi_label=multi_label,
                               threshold=threshold)
    correct = 0
    per_label = {label: [0, 0, 0] for label in labels}  # tp, fp, fn
    for eg in annotated:
        gold, pred = eg.reference.cats, eg.predicted.cats
        if not multi_label:
            gold_top = max(gold, key=gold.get)
            correct += int(bool(pred) and max(pred, key=pred.get) == gold_top)
            continue
        gold_on = {label for label, v in gold.items() if v >= 0.5}
        pred_on = {label for label in labels if _is_on(pred.get(label, 0.0), label, threshold, thresholds)}
        correct += int(gold_on == pred_on)
        for label in labels:
            if label not in gold:
                continue  # a missing label is not a negative
            counts = per_label[label]
            counts[0] += int(label in pred_on and label in gold_on)
            counts[1] += int(label in pred_on and label not in gold_on)
            counts[2] += int(label not in pred_on and label in gold_on)
    scores["cats_acc"] = correct / len(annotated) if annotated else None
    if multi_label and thresholds:
        f_per_type = {}
        for label, (tp, fp, fn) in per_label.items():
            p = tp / (tp + fp) if tp + fp else 0.0
            r = tp / (tp + fn) if tp + fn else 0.0
            f_per_type[label] = {"p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0}
        scores["cats_f_per_type"] = f_per_type
        for key in ("p", "r", "f"):
            scores[f"cats_macro_{key}"] = sum(v[key] for v in f_per_type.values()) / max(len(f_per_type), 1)
        scores["cats_score"] = scores["cats_macro_f"]
    return scores


@registry.scorers("bertflow.textcat_scorer.v1")
def make_textcat_scorer() -> Callable:
    return textcat_score
