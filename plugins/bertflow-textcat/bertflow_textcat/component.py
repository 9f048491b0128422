"""The ``bertflow_textcat`` component: ``doc.cats`` from the shared encoder."""
from typing import Callable, Dict, Iterable, List, Optional

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.types import Floats2d

from bertflow.api import (BertflowError, HeadPipe, annotation_mask, binary_cross_entropy, soft_target_loss,
                          softmax_cross_entropy)

from .errors import Errors

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "bertflow.TextCatHead.v1"
exclusive_classes = true
pooling = "cls"
dropout = 0.1
layers = "last"
n_layers = 4
grad_factor = 1.0
nO = null
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]


@Language.factory(
    "bertflow_textcat",
    assigns=["doc.cats"],
    default_config={
        "model": DEFAULT_MODEL,
        "threshold": 0.5,
        "thresholds": {},
        "loss_weight": 1.0, "learn_rate_scale": 1.0,
        "scorer": {"@scorers": "bertflow.textcat_scorer.v1"},
    },
    default_score_weights={"cats_score": 1.0, "cats_acc": 0.0, "cats_macro_f": 0.0, "cats_macro_auc": 0.0},
)
def make_textcat_head(nlp: Language, name: str, model: Model, threshold: float,
                      thresholds: Dict[str, float], scorer: Callable, loss_weight: float = 1.0,
                      learn_rate_scale: float = 1.0) -> "TextCatHead":
    """A text classification head listening to ``bertflow_encoder``.

    model (Model[List[Doc], Floats2d]): usually ``bertflow.TextCatHead.v1``; its
        ``exclusive_classes`` picks softmax (one label) or sigmoid (multi-label).
    threshold (float): multi-label decision threshold for scoring (default 0.5).
    thresholds (Dict[str, float]): per-label overrides of ``threshold``.
    scorer (Callable): usually ``bertflow.textcat_scorer.v1``.
    loss_weight (float): scales this head's loss and gradient (multitask training); default 1.
    learn_rate_scale (float): the learning rate of this head's own weights, as a multiple of the
        optimizer's (the encoder keeps the optimizer's); default 1.
    """
    return TextCatHead(nlp.vocab, model, name, threshold=threshold, thresholds=thresholds, scorer=scorer,
                       loss_weight=loss_weight, learn_rate_scale=learn_rate_scale)


class TextCatHead(HeadPipe):
    def __init__(self, vocab: Vocab, model: Model, name: str = "bertflow_textcat", *, threshold: float = 0.5,
                 thresholds: Optional[Dict[str, float]] = None, scorer: Optional[Callable] = None,
                 loss_weight: float = 1.0, learn_rate_scale: float = 1.0):
        super().__init__(vocab, model, name, scorer=scorer, loss_weight=loss_weight,
                         learn_rate_scale=learn_rate_scale, labels=[], threshold=float(threshold),
                         thresholds=dict(thresholds or {}))

    @property
    def labels(self) -> tuple:
        return tuple(self.cfg["labels"])

    @property
    def exclusive(self) -> bool:
        return bool(self.model.attrs.get("exclusive_classes", True))

    def add_label(self, label: str) -> int:
        if label in self.cfg["labels"]:
            return 0
        if self.model.has_dim("nO") and self.model.get_dim("nO"):
            raise BertflowError(
                Errors.TC001.format(label=label, name=self.name, labels=self.labels)
            )
        self.cfg["labels"].append(label)
        return 1

    def predict(self, docs: Iterable[Doc]) -> Floats2d:
        docs = list(docs)
        if not self.labels:
            return numpy.zeros((len(docs), 0), dtype="f")
        return self.model.predict(docs)

    def set_annotations(self, docs: Iterable[Doc], scores: Floats2d) -> None:
        scores = self.model.ops.to_numpy(scores)
        for doc, row in zip(docs, scores):
            for label, value in zip(self.labels, row):
                doc.cats[label] = float(value)

    def _truths(self, examples: List[Example]):
        index = {label: i for i, label in enumerate(self.labels)}
        fill = 0.0 if self.exclusive else numpy.nan
        truths = numpy.full((len(examples), len(self.labels)), fill, dtype="f")
        for i, eg in enumerate(examples):
            for label, value in eg.reference.cats.items():
                if label not in index:
                    raise BertflowError(
                        Errors.TC004.format(
                            label=label,
                            doc_start=eg.reference.text[:50],
                            name=self.name,
                            labels=self.labels,
                        )
                    )
                truths[i, index[label]] = value
        return truths

    def is_annotated(self, example: Example) -> bool:
        return bool(example.reference.cats)

    def get_loss(self, examples: Iterable[Example], scores: Floats2d):
        """Cross-entropy (exclusive) or per-label BCE (multi-label). Examples
        without cats give no loss; in multi-label data an absent label is missing, not 0."""
        examples = list(examples)
        truths = self.model.ops.asarray2f(self._truths(examples))
        mask = annotation_mask(examples, lambda doc: bool(doc.cats))
        loss_fn = softmax_cross_entropy if self.exclusive else binary_cross_entropy
        return loss_fn(scores, truths, self.model.ops.asarray1f(mask))

    def get_distill_loss(self, examples: Iterable[Example], teacher_scores: Floats2d, scores: Floats2d, *,
                         temperature: float = 1.0):
        """``bertflow distill``: KL divergence to the teacher's temperature-softened
        class distribution (per-label binary KL for multi-label), on every doc."""
        activation = "softmax" if self.exclusive else "sigmoid"
        return soft_target_loss(scores, teacher_scores, temperature=temperature, activation=activation)

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None,
                   labels: Optional[Iterable[str]] = None) -> None:
        """Set the labels (given, or every label seen in the examples' cats) and
        initialize the model on a few examples."""
        if labels is None:
            found = set()
            for eg in get_examples():
                found.update(eg.reference.cats)
            labels = sorted(found)
        labels = list(labels)
        if not labels:
            raise BertflowError(
                Errors.TC002.format(name=self.name)
            )
        if self.exclusive and len(labels) < 2:
            raise BertflowError(Errors.TC003.format(name=self.name, labels=labels))
        self.cfg["labels"] = labels
        self.model.get_ref("output_layer").set_dim("nO", len(labels))
        self.model.initialize(X=self.sample_docs(get_examples, nlp))

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, object]:
        return self.scorer(examples, labels=list(self.labels), multi_label=not self.exclusive,
                           threshold=self.cfg["threshold"], thresholds=self.cfg["thresholds"])
