"""The cross-encoder ``bertflow_pair_classifier``: the pair
``(doc._.text_pair, doc.text)`` through the encoder's pair input, a head on
[CLS] (the BERT paper's sentence-pair tasks).

- regression (default): one logit; ``doc._.pair_score = sigmoid(logit) *
  score_scale``; trained with binary cross-entropy against ``score /
  score_scale`` (sentence-transformers' CrossEncoder with one label);
- classification: softmax over labels into ``doc.cats`` (paraphrase, NLI...).
"""
from typing import Callable, Iterable, List, Optional

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry
from thinc.api import Model, chain
from thinc.types import Floats2d

from bertflow.api import (BertflowError, Classifier, DocPooler, HeadPipe, annotation_mask, binary_cross_entropy,
                          softmax_cross_entropy)

from .extensions import install_extensions

MODES = ("regression", "classification")


@registry.architectures("bertflow.PairClassifierHead.v1")
def PairClassifierHead(mode: str = "regression", pooling: str = "pooler", dropout: float = 0.1, grad_factor: float = 1.0,
                       nO: Optional[int] = None) -> Model[List[Doc], Floats2d]:
    """The pooled [CLS] of the pair (BERT's pooler by default, as BertForSequenceClassification)
    -> dropout -> one sigmoid output (regression) or a softmax over labels."""
    if mode not in MODES:
        raise BertflowError(f"Unknown mode {mode!r} for the pair classifier: use 'regression' or 'classification'.")
    classifier = Classifier(nO=1 if mode == "regression" else nO, dropout=dropout,
                            activation="sigmoid" if mode == "regression" else "softmax")
    model = chain(DocPooler(pooling, grad_factor), classifier)
    model.set_ref("output_layer", classifier.get_ref("output_layer"))
    model.attrs["mode"] = mode
    return model


@Language.factory(
    "bertflow_pair_classifier",
    assigns=["doc._.pair_score", "doc.cats"],
    requires=["doc._.text_pair"],
    default_config={
        "model": {"@architectures": "bertflow.PairClassifierHead.v1", "mode": "regression", "pooling": "pooler",
                  "dropout": 0.1, "grad_factor": 1.0},
        "score_scale": 5.0,
        "loss_weight": 1.0,
        "scorer": {"@scorers": "bertflow.pair_scorer.v1"},
    },
    default_score_weights={"pair_spearman": 1.0, "pair_pearson": 0.0, "pair_acc": 0.0, "pair_macro_f": 0.0},
)
def make_pair_classifier(nlp: Language, name: str, model: Model, score_scale: float, scorer: Callable,
                         loss_weight: float = 1.0) -> "PairClassifier":
    """A cross-encoder head: set ``doc._.text_pair`` to the first sentence, the doc is the second.
    ``loss_weight`` scales its loss and gradient (multitask training)."""
    return PairClassifier(nlp.vocab, model, name, score_scale=score_scale, scorer=scorer, loss_weight=loss_weight)


class PairClassifier(HeadPipe):
    def __init__(self, vocab, model: Model, name: str = "bertflow_pair_classifier", *, score_scale: float = 5.0,
                 scorer: Optional[Callable] = None, loss_weight: float = 1.0):
        install_extensions()
        super().__init__(vocab, model, name, scorer=scorer, loss_weight=loss_weight, score_scale=float(score_scale),
                         labels=[])

    @property
    def regression(self) -> bool:
        return self.model.attrs.get("mode", "regression") == "regression"

    @property
    def labels(self) -> tuple:
        return tuple(self.cfg["labels"])

    def set_annotations(self, docs: Iterable[Doc], scores: Floats2d) -> None:
        scores = self.model.ops.to_numpy(scores)
        for doc, row in zip(docs, scores):
            if self.regression:
                doc._.pair_score = float(row[0]) * self.cfg["score_scale"]
            else:
                doc.cats.update({label: float(v) for label, v in zip(self.labels, row)})

    def is_annotated(self, example: Example) -> bool:
        ref = example.reference
        return ref._.text_pair is not None and (ref._.sim_score is not None if self.regression else bool(ref.cats))

    def get_loss(self, examples: Iterable[Example], scores: Floats2d):
        examples = list(examples)
        ops = self.model.ops
        if self.regression:
            truths = numpy.full((len(examples), 1), numpy.nan, dtype="f")
            for i, eg in enumerate(examples):  # a pair doc: text_pair set (a bi-encoder doc has none)
                if eg.reference._.sim_score is not None and eg.reference._.text_pair is not None:
                    truths[i, 0] = float(eg.reference._.sim_score) / self.cfg["score_scale"]
            return binary_cross_entropy(scores, ops.asarray2f(truths))
        index = {label: i for i, label in enumerate(self.labels)}
        truths = numpy.zeros((len(examples), len(index)), dtype="f")
        for i, eg in enumerate(examples):
            if eg.reference._.text_pair is None:
                continue
            for label, value in eg.reference.cats.items():
                if label not in index:
                    raise BertflowError(f"Unknown label {label!r} for {self.name!r} (labels {self.labels}) in the "
                                        f"doc starting {eg.reference.text[:40]!r}: re-initialize with it.")
                truths[i, index[label]] = value
        mask = annotation_mask(examples, lambda doc: bool(doc.cats) and doc._.text_pair is not None)
        return softmax_cross_entropy(scores, ops.asarray2f(truths), ops.asarray1f(mask))

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None,
                   labels: Optional[Iterable[str]] = None) -> None:
        if not self.regression:
            if labels is None:
                labels = sorted({label for eg in get_examples() for label in eg.reference.cats})
            labels = list(labels)
            if len(labels) < 2:
                raise BertflowError(f"{self.name!r} in classification mode needs at least two labels, found "
                                    f"{labels}: check the corpus (doc.cats) or set its labels.")
            self.cfg["labels"] = labels
            self.model.get_ref("output_layer").set_dim("nO", len(labels))
        self.model.initialize(X=self.sample_docs(get_examples, nlp))
