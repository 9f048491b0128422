"""SQuAD exact match and F1 with the official normalisation (lower-case,
strip punctuation, the articles a/an/the and extra whitespace; the maximum
over the gold answers; an unanswerable question's gold is the empty answer)."""
import re
import string
from collections import Counter
from typing import Callable, Dict, Iterable, List, Optional

from spacy.training import Example
from spacy.util import registry

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


def squad_scores(predictions: Iterable[str], golds: Iterable[List[str]]) -> Dict[str, float]:
    """``qa_exact`` and ``qa_f1`` (0-1, mean over questions) and ``qa_n``."""
    em = f1 = 0.0
    n = 0
    for pred, answers in zip(predictions, golds):
        answers = list(answers) or [""]
        em += max(exact_match(pred, a) for a in answers)
        f1 += max(token_f1(pred, a) for a in answers)
        n += 1
    return {"qa_exact": em / n if n else 0.0, "qa_f1": f1 / n if n else 0.0, "qa_n": n}


def gold_answers(doc, spans_key: str = "answers") -> Optional[List[str]]:
    """The gold answer texts of a reference doc, [] for an unanswerable
    question, None when the doc carries no QA annotation."""
    if spans_key not in doc.spans:
        return None
    group = doc.spans[spans_key]
    texts = group.attrs.get("texts")
    return list(texts) if texts is not None else [span.text for span in group]


def predicted_answer(doc, spans_key: str = "answers") -> str:
    if spans_key not in doc.spans or not len(doc.spans[spans_key]):
        return ""
    return doc.spans[spans_key][0].text


def qa_score(examples: Iterable[Example], spans_key: str = "answers", **kwargs) -> Dict[str, float]:
    """SQuAD EM/F1 of the top answer, over the examples whose reference has a
    question (``doc._.text_pair``) and QA annotation."""
    preds, golds = [], []
    for eg in examples:
        gold = gold_answers(eg.reference, spans_key)
        if gold is None or eg.reference._.text_pair is None:
            continue
        preds.append(predicted_answer(eg.predicted, spans_key))
        golds.append(gold)
    return squad_scores(preds, golds)


@registry.scorers("bertflow.qa_scorer.v1")
def make_qa_scorer() -> Callable:
    return qa_score
