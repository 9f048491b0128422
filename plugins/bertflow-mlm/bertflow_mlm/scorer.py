"""Masked-LM scores: masked-token accuracy, mean loss per target and perplexity
(and next-sentence accuracy), from the counts the component's ``score``
gathers by running the head on masked held-out text."""
import math
from typing import Callable, Dict, Iterable

from spacy.training import Example
from spacy.util import registry


def mlm_score(examples: Iterable[Example], *, n_targets: int = 0, n_correct: int = 0, loss_sum: float = 0.0,
              nsp_total: int = 0, nsp_correct: int = 0) -> Dict[str, object]:
    """``mlm_acc`` (share of masked wordpieces predicted exactly), ``mlm_loss``
    (mean cross-entropy per masked wordpiece, nats), ``mlm_perplexity``
    (exp of it), ``mlm_targets``; ``nsp_acc`` where the data has pairs."""
    if not n_targets:
        scores: Dict[str, object] = {"mlm_acc": None, "mlm_loss": None, "mlm_perplexity": None, "mlm_targets": 0}
    else:
        loss = loss_sum / n_targets
        scores = {"mlm_acc": n_correct / n_targets, "mlm_loss": loss,
                  "mlm_perplexity": math.exp(min(loss, 700.0)), "mlm_targets": n_targets}
    scores["nsp_acc"] = nsp_correct / nsp_total if nsp_total else None
    return scores


@registry.scorers("bertflow.mlm_scorer.v1")
def make_mlm_scorer() -> Callable:
    return mlm_score
