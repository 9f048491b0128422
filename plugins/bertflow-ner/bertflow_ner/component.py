"""The ``bertflow_ner`` component: ``doc.ents`` from per-token tags."""
from typing import Callable, Iterable, List, Optional

import numpy
from spacy.attrs import ENT_ID, ENT_IOB, ENT_KB_ID, ENT_TYPE
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example, biluo_to_iob
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.types import Ragged

from bertflow.api import BertflowError, HeadPipe, batch_rows, same_form, soft_target_loss, softmax_cross_entropy

from .errors import Errors
from .decoding import SCHEMES, make_tags, transitions, viterbi_ragged

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "bertflow.NerHead.v1"
wordpieces = "first"
dropout = 0.1
layers = "last"
n_layers = 4
grad_factor = 1.0
nO = null
case_features = false
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]
# what set_annotations writes per token with Doc.from_array: the whole entity state, as doc.set_ents
# (default "outside") would leave it
ENT_ATTRS = [ENT_IOB, ENT_TYPE, ENT_KB_ID, ENT_ID]
IOB_CODES = {"B": 3, "U": 3, "I": 1, "L": 1, "O": 2}  # spaCy's ENT_IOB values: begin, inside, outside


@Language.factory(
    "bertflow_ner",
    assigns=["doc.ents"],
    default_config={"model": DEFAULT_MODEL, "scheme": "BIO", "loss_weight": 1.0, "learn_rate_scale": 1.0,
                    "scorer": {"@scorers": "bertflow.ner_scorer.v1"}},
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_ner_head(nlp: Language, name: str, model: Model, scheme: str, scorer: Callable,
                  loss_weight: float = 1.0, learn_rate_scale: float = 1.0) -> "NerHead":
    """A token-classification NER head listening to ``bertflow_encoder``.

    model (Model[List[Doc], Ragged]): usually ``bertflow.NerHead.v1`` (a model giving
        ``List[Floats2d]``, one array per doc, works too).
    scheme (str): "BIO" or "BILUO" tags; decoding is constrained either way.
    scorer (Callable): usually ``bertflow.ner_scorer.v1``.
    loss_weight (float): scales this head's loss and gradient (multitask training); default 1.
    learn_rate_scale (float): the learning rate of this head's own weights, as a multiple of the
        optimizer's (the encoder keeps the optimizer's); default 1.
    """
    return NerHead(nlp.vocab, model, name, scheme=scheme, scorer=scorer, loss_weight=loss_weight,
                   learn_rate_scale=learn_rate_scale)


class NerHead(HeadPipe):
    def __init__(self, vocab: Vocab, model: Model, name: str = "bertflow_ner", *, scheme: str = "BIO",
                 scorer: Optional[Callable] = None, loss_weight: float = 1.0,
                 learn_rate_scale: float = 1.0):
        if scheme not in SCHEMES:
            raise BertflowError(Errors.NER002.format(scheme=scheme, name=name))
        super().__init__(vocab, model, name, scorer=scorer, loss_weight=loss_weight,
                         learn_rate_scale=learn_rate_scale, labels=[], scheme=scheme)
        self._decoder = None

    @property
    def labels(self) -> tuple:
        return tuple(self.cfg["labels"])

    @property
    def tags(self) -> List[str]:
        return make_tags(self.labels, self.cfg["scheme"])

    def _decoding(self):
        if self._decoder is None or self._decoder[0] != self.tags:
            tags = self.tags
            # per tag: ENT_IOB, ENT_TYPE (the label's hash), ENT_KB_ID, ENT_ID, as Doc.from_array reads them.
            # A decoded sequence is valid, so BILUO's L- and U- are spaCy's I and B.
            codes = numpy.zeros((len(tags), len(ENT_ATTRS)), dtype="uint64")
            for i, tag in enumerate(tags):
                codes[i, 0] = IOB_CODES[tag[0]]
                codes[i, 1] = self.vocab.strings.add(tag[2:]) if tag != "O" else 0
            self._decoder = (tags, transitions(tags, self.cfg["scheme"]), codes)
        return self._decoder

    def predict(self, docs: Iterable[Doc]) -> Ragged:
        """The constrained-Viterbi tag of every token of the batch (always a
        valid sequence per doc): tag indices (into ``self.tags``), flat, with
        each doc's token count as the lengths. ``tag_names`` reads them."""
        docs = list(docs)
        if not self.labels:
            lengths = numpy.asarray([len(doc) for doc in docs], dtype="int32")
            return Ragged(numpy.zeros((int(lengths.sum()),), dtype="int64"), lengths)  # all "O"
        flat, lengths = batch_rows(self.model.ops, self.model.predict(docs))
        start, allowed, end = self._decoding()[1]
        lengths = lengths.astype("int32")
        if not lengths.sum():
            return Ragged(numpy.zeros((0,), dtype="int64"), lengths)
        # the whole batch at once: one copy to the host, one log, one decode
        flat = self.model.ops.to_numpy(flat)
        return Ragged(viterbi_ragged(numpy.log(numpy.clip(flat, 1e-12, 1.0)), lengths, start, allowed, end), lengths)

    def tag_names(self, predicted: Ragged) -> List[List[str]]:
        """``predict``'s tags as strings, one list per doc (e.g. "B-PER")."""
        names = [self.tags[i] for i in numpy.asarray(predicted.dataXd).tolist()]
        bounds = numpy.cumsum(predicted.lengths).tolist()
        return [names[b - n: b] for b, n in zip(bounds, numpy.asarray(predicted.lengths).tolist())]

    def set_annotations(self, docs: Iterable[Doc], predicted: Ragged) -> None:
        """Write ``predict``'s tags as ``doc.ents``: the batch's entity codes
        by one lookup, then one ``Doc.from_array`` per doc; every token's
        entity state is replaced (tokens outside an entity become "O")."""
        codes = self._decoding()[2][numpy.asarray(predicted.dataXd, dtype="int64")]
        start = 0
        for doc, n in zip(docs, numpy.asarray(predicted.lengths).tolist()):
            if n:
                doc.from_array(ENT_ATTRS, codes[start: start + n])
            start += n

    def _gold(self, eg: Example) -> numpy.ndarray:
        """One-hot gold tags for the predicted tokens; NaN rows where missing."""
        index = {tag: i for i, tag in enumerate(self.tags)}
        n = len(eg.predicted)
        truths = numpy.full((n, len(index)), numpy.nan, dtype="f")
        if not eg.reference.has_annotation("ENT_IOB"):
            return truths  # no entity annotation at all: missing, not "no entities"
        for i, tag in enumerate(eg.get_aligned_ner()):
            if tag is None or tag == "-":
                continue  # this token's annotation is missing or misaligned
            if self.cfg["scheme"] == "BIO":
                tag = biluo_to_iob([tag])[0]  # spaCy's gold is BILUO: U- -> B-, L- -> I-
            if tag not in index:
                raise BertflowError(
                    Errors.NER004.format(
                        tag=tag[2:],
                        doc_start=eg.reference.text[:50],
                        name=self.name,
                        labels=self.labels,
                    )
                )
            truths[i] = 0.0
            truths[i, index[tag]] = 1.0
        return truths

    def is_annotated(self, example: Example) -> bool:
        return example.reference.has_annotation("ENT_IOB")

    def get_loss(self, examples: Iterable[Example], scores) -> tuple:
        """Softmax cross-entropy against the gold tags, mean over the batch's
        annotated tokens; ``scores`` is the model's output (a ``Ragged``, or a
        list of per-doc arrays from a model that gives one), the gradient has
        the same form."""
        examples = list(examples)
        ops = self.model.ops
        flat_scores, lengths = batch_rows(ops, scores)
        if not len(flat_scores):
            return 0.0, same_form(scores, ops.alloc2f(*flat_scores.shape), lengths)
        truths = numpy.concatenate([self._gold(eg) for eg in examples], axis=0)
        loss, d_flat = softmax_cross_entropy(flat_scores, ops.asarray2f(truths))
        return loss, same_form(scores, d_flat, lengths)

    def get_distill_loss(self, examples: Iterable[Example], teacher_scores, scores, *,
                         temperature: float = 1.0) -> tuple:
        """``bertflow distill``: per-token KL divergence to the teacher's
        temperature-softened tag distribution, mean over the batch's tokens."""
        ops = self.model.ops
        flat_scores, lengths = batch_rows(ops, scores)
        if not len(flat_scores):
            return 0.0, same_form(scores, ops.alloc2f(*flat_scores.shape), lengths)
        loss, d_flat = soft_target_loss(flat_scores, batch_rows(ops, teacher_scores)[0], temperature=temperature)
        return loss, same_form(scores, d_flat, lengths)

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None,
                   labels: Optional[Iterable[str]] = None) -> None:
        """Set the entity labels (given, or all seen in the examples) and initialize the model."""
        if labels is None:
            found = set()
            for eg in get_examples():
                found.update(ent.label_ for ent in eg.reference.ents)
            labels = sorted(found)
        labels = list(labels)
        if not labels:
            raise BertflowError(
                Errors.NER003.format(name=self.name)
            )
        self.cfg["labels"] = labels
        self.model.get_ref("output_layer").set_dim("nO", len(self.tags))
        self.model.initialize(X=self.sample_docs(get_examples, nlp))
