"""The ``bertflow_mlm`` component: continued pre-training of the shared encoder.

It trains on the raw-text examples of a corpus (``doc._.raw_text``, set by
``bertflow.TextCorpus.v1``): in each training batch it asks the encoder to
corrupt those docs' wordpieces (``corrupt_inputs``; every other doc of the
batch, which other heads train on, is encoded as it is) and predicts the
original wordpieces at the masked positions through BERT's masked-LM head,
whose decoder is the encoder's own word-embedding matrix. With
``next_sentence`` it also learns BERT's next-sentence task on the pairs a
``TextCorpus`` yields with ``pairs = bertflow_mlm.next_sentence_pairs.v1``.

At inference it does nothing (``doc`` is left as it is): its use is the
encoder it leaves behind (``bertflow export-encoder``). ``score`` masks the
held-out docs with a fixed seed and reports masked-token accuracy, loss and
perplexity.
"""
import logging
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import minibatch
from spacy.vocab import Vocab
from thinc.api import Config, Model

from bertflow.api import BertflowError, HeadPipe, loss_denominator, wordpiece_positions

from .errors import Errors
from .architectures import MLMInput, NSP_PARAMS, head_scores, init_head
from .masking import Corruption, Masking, Vocabulary, mask_docs
from .next_sentence import install_extensions as install_is_next

logger = logging.getLogger("bertflow.mlm")

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "bertflow.MaskedLMHead.v1"
next_sentence = false
upstream = "*"
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]

# checkpoint names of BERT's pre-training head weights -> this head's parameters (older TF ports say gamma/beta)
CHECKPOINT_NAMES = {
    "W": ("cls.predictions.transform.dense.weight",),
    "b": ("cls.predictions.transform.dense.bias",),
    "g": ("cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.gamma"),
    "beta": ("cls.predictions.transform.LayerNorm.bias", "cls.predictions.transform.LayerNorm.beta"),
    "bias": ("cls.predictions.bias", "cls.predictions.decoder.bias"),
    "nsp_W": ("cls.seq_relationship.weight",),
    "nsp_b": ("cls.seq_relationship.bias",),
}
NOT_NEXT = 1  # transformers' next_sentence_label: 0 = B follows A, 1 = B is random


@Language.factory(
    "bertflow_mlm",
    assigns=[],
    default_config={
        "model": DEFAULT_MODEL,
        "mask_probability": 0.15,
        "mask_token_rate": 0.8,
        "random_token_rate": 0.1,
        "whole_word": False,
        "mask_pair": False,
        "seed": 0,
        "loss_weight": 1.0, "learn_rate_scale": 1.0,
        "scorer": {"@scorers": "bertflow.mlm_scorer.v1"},
    },
    default_score_weights={"mlm_acc": 1.0, "mlm_loss": 0.0, "mlm_perplexity": 0.0, "nsp_acc": 0.0},
)
def make_mlm_head(nlp: Language, name: str, model: Model, mask_probability: float, mask_token_rate: float,
                  random_token_rate: float, whole_word: bool, mask_pair: bool, seed: int, scorer: Callable,
                  loss_weight: float = 1.0, learn_rate_scale: float = 1.0) -> "MaskedLMHead":
    """A masked-LM head on ``bertflow_encoder``, for continued pre-training.

    model (Model): ``bertflow.MaskedLMHead.v1``; ``next_sentence = true`` adds BERT's
        next-sentence head (train it on a ``bertflow.TextCorpus.v1`` with ``next_sentence = true``).
    mask_probability (float): share of wordpieces (or words) selected for prediction; BERT: 0.15.
    mask_token_rate (float): of those, the share replaced by [MASK]; BERT: 0.8.
    random_token_rate (float): the share replaced by a random wordpiece; BERT: 0.1 (the rest stay).
    whole_word (bool): select whole spaCy tokens (every wordpiece of a word, or none): whole-word
        masking, following the language's tokenizer (jieba words for Chinese with that segmenter).
    mask_pair (bool): also mask the wordpieces of ``doc._.text_pair`` (sentence A of an NSP pair).
    seed (int): seed of the masks, so a run is reproducible; evaluation masks with its own fixed seed.
    loss_weight (float) / learn_rate_scale (float): as for every bertflow head.
    """
    masking = Masking(mask_probability, mask_token_rate, random_token_rate, bool(whole_word), bool(mask_pair))
    return MaskedLMHead(nlp.vocab, model, name, masking=masking, seed=seed, scorer=scorer,
                        loss_weight=loss_weight, learn_rate_scale=learn_rate_scale)


class MaskedLMHead(HeadPipe):
    def __init__(self, vocab: Vocab, model: Model, name: str = "bertflow_mlm", *, masking: Masking = Masking(),
                 seed: int = 0, scorer: Optional[Callable] = None, loss_weight: float = 1.0,
                 learn_rate_scale: float = 1.0):
        install_is_next()
        super().__init__(vocab, model, name, scorer=scorer, loss_weight=loss_weight,
                         learn_rate_scale=learn_rate_scale, seed=int(seed), head_from="")
        self.masking = masking
        self._rng = numpy.random.default_rng(seed)
        self._encoder = None
        self._vocabulary: Optional[Vocabulary] = None
        self._pending: Dict[int, Corruption] = {}  # id(predicted doc) -> its masking, for the current batch

    # --- the encoder contract: bind_encoder and corrupt_inputs ---
    def bind_encoder(self, encoder) -> None:
        """Called by the encoder this head listens to (``find_listeners``)."""
        self._encoder = encoder
        self._vocabulary = None

    @property
    def encoder(self):
        if self._encoder is None:
            raise BertflowError(
                Errors.MLM001.format(name=self.name))
        return self._encoder

    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            self._vocabulary = Vocabulary(self.encoder.tokenizer)
        return self._vocabulary

    def is_annotated(self, example: Example) -> bool:
        """Raw-text examples (``bertflow.TextCorpus.v1``) are this head's."""
        ref = example.reference
        return bool(ref.has_extension("raw_text") and ref._.raw_text and len(example.predicted))

    def corrupt_inputs(self, examples: List[Example], tokenized: list) -> Dict[int, object]:
        """Mask the wordpieces of this head's docs in a training batch."""
        self._pending = {}
        mine = [i for i, (eg, tok) in enumerate(zip(examples, tokenized)) if tok is not None and self.is_annotated(eg)]
        masked = mask_docs([examples[i].predicted for i in mine], [tokenized[i] for i in mine], self.masking,
                           self.vocabulary(), self._rng)
        out = {}
        for i, corruption in zip(mine, masked):
            self._pending[id(examples[i].predicted)] = corruption
            out[i] = corruption.tokenized
        return out

    # --- training ---
    def model_input(self, docs: List[Doc]) -> MLMInput:
        positions = [target_positions(doc._.trf_windows, self._pending.get(id(doc))) for doc in docs]
        return MLMInput(docs, positions, self.embeddings())

    def embeddings(self):
        return self.encoder.transformer.get_input_embeddings().weight

    def update(self, examples: Iterable[Example], **kwargs) -> Dict[str, float]:
        examples = list(examples)
        try:
            if self.model.attrs["next_sentence"] and not any(len(eg.predicted) for eg in examples):
                loss_denominator(0)  # HeadPipe meets the other ranks' masked-LM count; this is the NSP one
            return super().update(examples, **kwargs)
        finally:
            self._pending = {}

    def get_loss(self, examples: Iterable[Example], scores) -> Tuple[float, tuple]:
        examples = list(examples)
        logits, nsp_logits = scores
        xp = self.model.ops.xp
        labels = numpy.concatenate([self._labels(eg.predicted) for eg in examples] or [numpy.zeros((0,), "int64")])
        loss, d_logits = cross_entropy(xp, logits, labels, loss_denominator(len(labels)))
        d_nsp = None
        if nsp_logits is not None:
            nsp_labels, nsp_known = nsp_targets(examples)
            nsp_loss, d_nsp = cross_entropy(xp, nsp_logits, nsp_labels, loss_denominator(int(nsp_known.sum())),
                                            keep=nsp_known)
            loss += nsp_loss
        return loss, (d_logits, d_nsp)

    def _labels(self, doc: Doc) -> numpy.ndarray:
        corruption = self._pending.get(id(doc))
        if corruption is None:
            return numpy.zeros((0,), dtype="int64")
        return numpy.concatenate([corruption.doc_labels, corruption.pair_labels])

    # --- inference: nothing to annotate ---
    def predict(self, docs: Iterable[Doc]):
        return None

    def set_annotations(self, docs: Iterable[Doc], scores) -> None:
        return None

    # --- evaluation ---
    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, object]:
        """Mask each raw-text doc with a fixed seed (the same masks every
        evaluation) and measure the head on it: masked-token accuracy, mean
        loss per target and perplexity (and NSP accuracy on pairs)."""
        examples = [eg for eg in examples if self.is_annotated(eg)]
        rng = numpy.random.default_rng(self.cfg["seed"] + 7919)
        xp = self.model.ops.xp
        totals = {"n_targets": 0, "n_correct": 0, "loss_sum": 0.0, "nsp_total": 0, "nsp_correct": 0}
        for batch in minibatch(examples, 32):
            docs = [eg.predicted for eg in batch]
            masked = mask_docs(docs, self.encoder.tokenize(docs), self.masking, self.vocabulary(), rng)
            datas, windows = self.encoder.outputs(docs, [m.tokenized if m is not None else None for m in masked])
            positions = [target_positions(win, m) for win, m in zip(windows, masked)]
            (logits, nsp_logits), _ = head_scores(self.model, datas, positions, self.embeddings(), False)
            labels = numpy.concatenate([numpy.concatenate([m.doc_labels, m.pair_labels]) for m in masked
                                        if m is not None] or [numpy.zeros((0,), "int64")])
            if len(labels):
                loss, _ = cross_entropy(xp, logits, labels, 1.0)
                totals["loss_sum"] += loss
                totals["n_targets"] += len(labels)
                totals["n_correct"] += int((self.model.ops.to_numpy(logits.argmax(axis=1)) == labels).sum())
            if nsp_logits is not None:
                nsp_labels, known = nsp_targets(batch)
                predicted = self.model.ops.to_numpy(nsp_logits.argmax(axis=1))
                totals["nsp_total"] += int(known.sum())
                totals["nsp_correct"] += int(((predicted == nsp_labels) & known).sum())
        return self.scorer(examples, **totals)

    # --- setup ---
    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        """Size the head to the encoder (width, vocabulary, activation) and take
        BERT's pre-training head weights from the encoder's checkpoint where it
        has them (``cls.predictions.*``); else initialise them as BERT does and
        say so: a random head sends noise into the encoder at first, so warm it
        up with the encoder frozen (``[components.encoder] frozen_steps``)."""
        transformer = self.encoder.transformer
        config = transformer.config
        vocab_size, width = tuple(self.embeddings().shape)
        init_head(self.model, width=width, vocab_size=vocab_size, act=getattr(config, "hidden_act", "gelu"),
                  eps=float(getattr(config, "layer_norm_eps", 1e-12)),
                  init_range=float(getattr(config, "initializer_range", 0.02)), seed=self.cfg["seed"])
        found = self.encoder.checkpoint_tensors("cls.")
        loaded = []
        for param, names in CHECKPOINT_NAMES.items():
            if not self.model.has_param(param):
                continue
            key = next((n for n in names if n in found), None)
            if key is not None and tuple(found[key].shape) == tuple(self.model.get_param(param).shape):
                self.model.set_param(param, self.model.ops.asarray(found[key].float().numpy()))
                loaded.append(param)
        own = [p for p in CHECKPOINT_NAMES if self.model.has_param(p)]
        if len(loaded) == len(own):
            self.cfg["head_from"] = "checkpoint"
            logger.info("%s: masked-LM head weights loaded from the encoder's checkpoint", self.name)
        else:
            self.cfg["head_from"] = "random"
            missing = [p for p in own if p not in loaded]
            logger.warning(
                "%s: the encoder's checkpoint has no pre-training head weights for %s (it ships a base model "
                "only); the head starts from random weights. Train it on the frozen encoder first so it does not push "
                "noise into the encoder: projects/pretrain's train-head step, or [components.encoder] frozen_steps.",
                self.name, ", ".join(missing))

    def hf_head_weights(self) -> Tuple[str, Dict[str, object]]:
        """This head in Hugging Face's names, for ``bertflow export-encoder``:
        (model class, {name: tensor}). The decoder weight is the tied word
        embedding matrix, which the export writes with the encoder."""
        import torch

        names = {param: hf_names[0] for param, hf_names in CHECKPOINT_NAMES.items()}  # the current names
        weights = {hf: torch.from_numpy(numpy.ascontiguousarray(self.model.ops.to_numpy(self.model.get_param(p))))
                   for p, hf in names.items() if self.model.has_param(p)}
        weights["cls.predictions.decoder.bias"] = weights["cls.predictions.bias"]
        cls = "BertForPreTraining" if all(self.model.has_param(p) for p in NSP_PARAMS) else "BertForMaskedLM"
        return cls, weights


def target_positions(windows: Optional[dict], corruption: Optional[Corruption]) -> Optional[numpy.ndarray]:
    """(row, position) of each masked wordpiece in the doc's encoder rows:
    the doc's own targets in the window that owns them, then the pair's (in
    the first row, after [CLS])."""
    if corruption is None or windows is None or corruption.n_targets == 0:
        return None
    doc_part = wordpiece_positions(windows)[corruption.doc_index]
    pair_part = numpy.stack([numpy.zeros_like(corruption.pair_index), 1 + corruption.pair_index], axis=1)
    return numpy.concatenate([doc_part, pair_part]).astype("int64")


def nsp_targets(examples: List[Example]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Per example: the next-sentence label (0 follows, 1 random) and whether it has one."""
    known = numpy.asarray([eg.reference._.is_next is not None for eg in examples], dtype=bool)
    labels = numpy.asarray([0 if eg.reference._.is_next else NOT_NEXT for eg in examples], dtype="int64")
    return labels, known


def cross_entropy(xp, logits, labels: numpy.ndarray, denominator: float, keep: Optional[numpy.ndarray] = None):
    """Summed softmax cross-entropy over rows (``keep``: only those rows) divided
    by ``denominator``, and its gradient."""
    if logits.shape[0] == 0:
        return 0.0, xp.zeros(logits.shape, dtype="float32")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    rows = xp.arange(len(labels))
    labels_xp = xp.asarray(labels)
    picked = -log_probs[rows, labels_xp]
    d = xp.exp(log_probs)
    d[rows, labels_xp] -= 1.0
    if keep is not None:
        mask = xp.asarray(keep.astype("float32"))
        picked = picked * mask
        d *= mask[:, None]
    return float(picked.sum()) / denominator, (d / denominator).astype("float32")
