"""The ``bertflow_multiple_choice`` component, its model, scorer and batcher.

Data layout: one doc per (context, candidate) pair. The doc's text is the
candidate, ``doc._.text_pair`` the context (so the encoder reads
``[CLS] context [SEP] candidate [SEP]``), ``doc._.mc_question`` groups the
candidates of one question and, on reference docs, ``doc._.mc_label`` is 1.0
for the right candidate and 0.0 for the others. The head writes
``doc._.mc_score``; ``choose`` turns a question's scores into probabilities.
"""
from typing import Callable, Iterable, List, Optional, Sequence

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Model
from thinc.types import Floats2d

from bertflow.api import BertflowError, HeadPipe, loss_denominator

from . import architectures as _architectures  # noqa: F401  (registers bertflow_mc.MultipleChoiceHead.v1)
from .scorer import question_groups

EXTENSIONS = ("mc_question", "mc_label", "mc_score")


def install_extensions() -> None:
    for name in EXTENSIONS:
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)


install_extensions()


@Language.factory(
    "bertflow_multiple_choice",
    assigns=["doc._.mc_score"],
    default_config={
        "model": {"@architectures": "bertflow_mc.MultipleChoiceHead.v1", "pooling": "cls", "dropout": 0.1,
                  "grad_factor": 1.0},
        "scorer": {"@scorers": "bertflow_mc.scorer.v1"},
    },
    default_score_weights={"mc_acc": 1.0},
)
def make_multiple_choice_head(nlp: Language, name: str, model: Model, scorer: Callable) -> "MultipleChoiceHead":
    """A multiple-choice head listening to ``bertflow_encoder``."""
    return MultipleChoiceHead(nlp.vocab, model, name, scorer=scorer)


class MultipleChoiceHead(HeadPipe):
    def set_annotations(self, docs: Iterable[Doc], scores: Floats2d) -> None:
        scores = self.model.ops.to_numpy(scores)
        for doc, row in zip(docs, scores):
            doc._.mc_score = float(row[0])

    def get_loss(self, examples: Iterable[Example], scores: Floats2d):
        """Softmax cross-entropy over each question's candidates in the batch.
        A question without exactly one right candidate among at least two gives
        no loss, nor do docs without a question or label."""
        examples = list(examples)
        flat = self.model.ops.to_numpy(scores)[:, 0]
        d_scores = numpy.zeros((len(examples), 1), dtype="f")
        loss, groups = 0.0, []
        for members in question_groups(examples).values():
            gold = [float(examples[i].reference._.mc_label) for i in members]
            if len(members) >= 2 and sum(g == 1.0 for g in gold) == 1:
                groups.append((members, gold.index(1.0)))
        n = loss_denominator(len(groups))  # a mean over the questions of the whole batch, on any number of ranks
        for members, right in groups:
            s = flat[members]
            p = numpy.exp(s - s.max())
            p /= p.sum()
            loss -= float(numpy.log(max(p[right], 1e-12)))
            p[right] -= 1.0
            d_scores[members, 0] = p / n
        return loss / n, self.model.ops.asarray2f(d_scores)

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        self.model.initialize(X=self.sample_docs(get_examples, nlp))


def choose(nlp: Language, context: str, candidates: Sequence[str]) -> List[dict]:
    """Score each candidate against ``context``; probabilities sum to 1.

    RETURNS (List[dict]): per candidate, in the given order: ``text``,
    ``score`` (the head's raw score) and ``prob`` (softmax over the candidates).
    """
    if not candidates:
        raise BertflowError("choose() needs at least one candidate.")
    if not any(isinstance(pipe, MultipleChoiceHead) for _, pipe in nlp.pipeline):
        raise BertflowError("The pipeline has no bertflow_multiple_choice component: add one "
                            "(bertflow init config --tasks multiple_choice) and train it.")
    docs = []
    for text in candidates:
        doc = nlp.make_doc(text)
        doc._.text_pair = context
        docs.append(doc)
    scores = numpy.asarray([doc._.mc_score for doc in nlp.pipe(docs)], dtype="f")
    probs = numpy.exp(scores - scores.max())
    probs /= probs.sum()
    return [{"text": t, "score": float(s), "prob": float(p)} for t, s, p in zip(candidates, scores, probs)]
