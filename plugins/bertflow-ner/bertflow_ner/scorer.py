"""Exact-span entity P/R/F, overall and per type (the conlleval definition:
an entity counts only if its start, end and type all match)."""
from typing import Callable, Dict, Iterable

from spacy.scorer import get_ner_prf
from spacy.training import Example
from spacy.util import registry


def ner_score(examples: Iterable[Example], **kwargs) -> Dict[str, object]:
    """``ents_p``, ``ents_r``, ``ents_f`` and ``ents_per_type`` over the
    examples whose reference carries entity annotation."""
    annotated = [eg for eg in examples if eg.reference.has_annotation("ENT_IOB")]
    return get_ner_prf(annotated)


@registry.scorers("bertflow.ner_scorer.v1")
def make_ner_scorer() -> Callable:
    return ner_score
