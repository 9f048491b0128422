"""The ``bertflow_encoder`` factory: the shared encoder component and its
default config (``bertflow.Encoder.v1`` over minilm-l6, windows of 256
wordpieces with stride 192)."""
from typing import Callable, List

from spacy.language import Language
from spacy.tokens import Doc
from spacy_transformers.data_classes import FullTransformerBatch
from thinc.api import Config, Model

from bertflow.encoder.component import EncoderComponent


DEFAULT_CONFIG_STR = """
[encoder]
max_batch_items = 0
sort_buffer = 1024
frozen = false
frozen_steps = 0
trainable_layers = 0
grad_clip_norm = 1.0

[encoder.set_extra_annotations]
@annotation_setters = "spacy-transformers.null_annotation_setter.v1"

[encoder.model]
@architectures = "bertflow.Encoder.v1"
name = "minilm-l6"
keep_layers = 1
precision = "fp32"
max_length = 0
max_pair_length = 0
mixed_precision = false
grad_scaler_config = {}
tokenizer_config = {"use_fast": true}
transformer_config = {}

[encoder.model.get_windows]
@misc = "bertflow.strided_windows.v1"
window = 256
stride = 192
"""
DEFAULT_CONFIG = Config().from_str(DEFAULT_CONFIG_STR)


@Language.factory(
    "bertflow_encoder",
    assigns=["doc._.trf_data", "doc._.trf_windows"],
    default_config=DEFAULT_CONFIG["encoder"],
)
def make_encoder(
    nlp: Language,
    name: str,
    model: Model[List[Doc], FullTransformerBatch],
    set_extra_annotations: Callable[[List[Doc], FullTransformerBatch], None],
    max_batch_items: int,
    sort_buffer: int,
    frozen: bool,
    grad_clip_norm: float,
    frozen_steps: int = 0,
    trainable_layers: int = 0,
) -> EncoderComponent:
    """The shared BERT encoder component.

    model (Model[List[Doc], FullTransformerBatch]): usually ``bertflow.Encoder.v1``.
    set_extra_annotations (Callable): called after ``doc._.trf_data`` is set.
    max_batch_items (int): most padded wordpieces per sub-batch in ``pipe``; 0
        (default) chooses by device: 4,096 on a CPU, 65,536 on a GPU (the
        sub-batch is still at most ``batch_size`` docs).
    sort_buffer (int): ``pipe`` reads this many docs ahead, sorts them by wordpiece
        count and encodes sub-batches of similar length (at most ``batch_size`` docs
        and ``max_batch_items`` padded wordpieces each), so rows are barely padded; docs
        still come out in their input order. 0 sorts within each ``batch_size``
        batch only (lowest latency and memory).
    frozen (bool): feature-based mode: the encoder runs without gradients and
        its weights never change, while heads still train on its outputs.
    frozen_steps (int): the encoder stays frozen for the first N training
        updates after ``nlp.initialize()`` (a training run; a loaded pipeline
        trained further is not frozen again), then trains: the heads warm up
        on its fixed outputs first (linear probing, then fine-tuning), so
        their random initial weights do not send noise into the pre-trained
        encoder, and a short CPU run spends its time where it pays. During
        those steps each doc's outputs are computed once and kept (another
        epoch over the same docs costs only the heads); they are dropped when
        the encoder starts to train. 0 (default): it trains from the first step.
    trainable_layers (int): train only the top N transformer layers (and the
        pooler); the embeddings and the layers below keep their pre-trained
        weights. A step costs less (the backward pass stops at the lowest
        trainable layer) and less of the pre-trained encoder moves. 0
        (default): every layer trains.
    grad_clip_norm (float): clip the encoder's gradients to this global L2 norm
        before each optimizer step, as BERT and Hugging Face training do (thinc's
        optimizer only clips each parameter on its own); 0 turns it off.
    """
    return EncoderComponent(nlp.vocab, model, set_extra_annotations, name=name, max_batch_items=max_batch_items,
                   sort_buffer=sort_buffer, frozen=frozen, grad_clip_norm=grad_clip_norm,
                   frozen_steps=frozen_steps, trainable_layers=trainable_layers)
