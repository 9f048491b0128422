"""``HeadPipe``: the training loop every head shares, in spaCy's shape.

A head subclasses it and supplies ``get_loss`` and ``set_annotations`` (and
usually ``initialize`` to collect labels). The update never skips the
backward pass of a batch that merely lacks this head's annotation: the
encoder's last listener triggers the one backward pass and optimizer step for
every head, so a masked (zero) gradient still has to flow.
"""
from itertools import islice
from typing import Callable, Dict, Iterable, List, Optional

from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer, set_dropout_rate
from thinc.types import Ragged

from bertflow.heads.losses import loss_denominator
from bertflow.errors import BertflowError, Errors


class HeadPipe(TrainablePipe):
    """A trainable spaCy pipe for a head on the shared encoder.

    Subclasses supply ``get_loss(examples, scores) -> (loss, d_scores)`` and
    ``set_annotations(docs, scores)``, usually ``initialize`` (labels, output
    width) and, when their model needs it, ``predict``. Keyword ``cfg`` entries
    are saved with the pipe (``self.cfg``), e.g. the labels. ``loss_weight``
    scales the head's loss and gradient (multitask training; expose it as a
    factory setting, as the bundled heads do). ``learn_rate_scale`` multiplies
    the optimizer's learning rate for this head's own weights (not the
    encoder's): a freshly initialised head learns best at a rate an order of
    magnitude above the one that suits the pre-trained encoder, so it is
    useful before the encoder has drifted far.
    """

    def __init__(self, vocab: Vocab, model: Model, name: str, *, scorer: Optional[Callable] = None,
                 loss_weight: float = 1.0, learn_rate_scale: float = 1.0, **cfg):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        if learn_rate_scale < 0:
            raise BertflowError(Errors.E075.format(name=name, value=learn_rate_scale))
        self.cfg = dict(cfg, loss_weight=float(loss_weight), learn_rate_scale=float(learn_rate_scale))

    def predict(self, docs: Iterable[Doc]):
        return self.model.predict(self.model_input(list(docs)))

    def model_input(self, docs: List[Doc]):
        """What the head's model is called with for ``docs`` in ``predict`` and
        ``update``: the docs themselves, unless a head's model needs more (a
        masked-LM head adds the positions it predicts)."""
        return docs

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        examples = list(examples)
        validate_examples(examples, f"{type(self).__name__}.update")
        # per-head weight in a multitask pipeline: scales this head's gradient
        return self._step(examples, lambda scores: self.get_loss(examples, scores),
                          float(self.cfg.get("loss_weight", 1.0)), drop=drop, sgd=sgd, losses=losses)

    def _step(self, examples: List[Example], loss_of: Callable, weight: float, *, drop: float,
              sgd: Optional[Optimizer], losses: Optional[Dict[str, float]]) -> Dict[str, float]:
        """One training step of this head: forward on the examples' predicted
        docs, ``loss_of(scores) -> (loss, d_scores)`` times ``weight``, backward
        (into the encoder through the listener), and the head's own optimizer
        step when ``sgd`` is given."""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        if not any(len(eg.predicted) for eg in examples):
            loss_denominator(0)  # the encoder skipped this batch too; meet the other ranks' get_loss
            return losses
        set_dropout_rate(self.model, drop)
        scores, backprop = self.model.begin_update(self.model_input([eg.predicted for eg in examples]))
        loss, d_scores = loss_of(scores)
        if weight != 1.0:
            loss, d_scores = loss * weight, _scaled(d_scores, weight)
        backprop(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += float(loss)
        return losses

    def distill(
        self,
        examples: Iterable[Example],
        teacher_scores,
        *,
        temperature: float = 1.0,
        weight: Optional[float] = None,
        soft_weight: float = 1.0,
        gold_weight: float = 0.0,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One distillation step (``bertflow distill``): run this (student)
        head on the examples' predicted docs, take the loss against
        ``teacher_scores`` (the teacher head's model output for the same inputs)
        from ``get_distill_loss``, and backpropagate into the head and, through
        the listener, into the student encoder, as ``update`` does.

        A head takes part in distillation by defining
        ``get_distill_loss(examples, teacher_scores, scores, *, temperature) ->
        (loss, d_scores)``; ``scores`` is its model's output in training and the
        gradient is what its model's backward pass takes (as from ``get_loss``).
        The loss is ``soft_weight`` x the distillation loss + ``gold_weight`` x
        the head's own ``get_loss`` on the examples' gold annotation (examples
        without it add nothing), all times ``weight`` (default: the head's
        ``loss_weight``). ``soft_weight`` 0 trains on gold alone
        (``teacher_scores`` may then be None).
        """
        examples = list(examples)
        if not soft_weight and not gold_weight:
            raise BertflowError(Errors.E119.format(name=self.name))

        def loss_of(scores):
            parts = []
            if soft_weight:
                parts.append((soft_weight, self.get_distill_loss(examples, teacher_scores, scores,
                                                                 temperature=temperature)))
            if gold_weight:
                parts.append((gold_weight, self.get_loss(examples, scores)))
            loss, d_scores = 0.0, None
            for part_weight, (part_loss, d_part) in parts:
                d_part = _scaled(d_part, part_weight) if part_weight != 1.0 else d_part
                loss += part_weight * part_loss
                d_scores = d_part if d_scores is None else _summed(d_scores, d_part)
            return loss, d_scores

        weight = float(self.cfg.get("loss_weight", 1.0)) if weight is None else float(weight)
        return self._step(examples, loss_of, weight, drop=drop, sgd=sgd, losses=losses)

    def finish_update(self, sgd: Optimizer) -> None:
        """Step this head's own weights, at ``learn_rate_scale`` times the
        optimizer's rate (the encoder steps itself, at the optimizer's rate)."""
        scale = float(self.cfg.get("learn_rate_scale", 1.0))
        self.model.finish_update(sgd if scale == 1.0 else _ScaledRate(sgd, scale))

    def is_annotated(self, example: Example) -> bool:
        """Whether ``example``'s reference carries this head's annotation (so it
        can give a loss and be scored). Heads override it; ``bertflow
        evaluate`` scores each head only on the examples annotated for it."""
        return True

    def sample_docs(self, get_examples: Callable[[], Iterable[Example]], nlp: Optional[Language], n: int = 8) -> List[Doc]:
        """A few predicted docs to initialize the model on (shapes only)."""
        docs = [eg.predicted for eg in islice(get_examples(), n)] if get_examples is not None else []
        if not docs:
            docs = [(nlp.make_doc("hello") if nlp is not None else Doc(self.vocab, words=["hello"]))]
        return docs


class _ScaledRate:
    """An optimizer seen through a learning-rate factor (thinc optimizers take ``lr_scale``)."""

    def __init__(self, optimizer: Optimizer, scale: float):
        self.optimizer, self.scale = optimizer, scale

    def __call__(self, key, weights, gradient, *, lr_scale: float = 1.0):
        return self.optimizer(key, weights, gradient, lr_scale=lr_scale * self.scale)

    def __getattr__(self, name):
        return getattr(self.optimizer, name)


def _summed(a, b):
    """Elementwise ``a + b`` of two gradients of the same structure."""
    if isinstance(a, (list, tuple)):
        return type(a)(_summed(x, y) for x, y in zip(a, b))
    return a + b


def _scaled(d_scores, weight: float):
    """``d_scores`` (an array, a ``Ragged``, or a list/tuple of arrays) times ``weight``."""
    if isinstance(d_scores, (list, tuple)):
        return type(d_scores)(_scaled(d, weight) for d in d_scores)
    if isinstance(d_scores, Ragged):
        return Ragged(d_scores.dataXd * weight, d_scores.lengths)
    return d_scores * weight
