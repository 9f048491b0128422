"""``bertflow.Encoder.v1``: the shared BERT encoder as a thinc Model.

It emits spacy-transformers' data classes (a ``FullTransformerBatch``, split
into ``TransformerData`` per doc) so ``TransformerListener`` and its tooling
work unchanged, and reuses spacy-transformers' ``HFShim`` (made safe to load: ``serialization.py``) for the
Hugging Face model (training, mixed precision, serialization with tokenizer
and config, so a saved pipeline loads without the original model files).

What the stock ``TransformerModel`` can't do and this one does: text pairs
(``doc._.text_pair``), windows over wordpieces rather than spaCy tokens (no
overflow however long a token is), no padding beyond the longest row,
``torch.inference_mode`` plus precision switches at inference, and the hidden
states of the last k layers for heads that mix or concatenate layers.
"""
import copy
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import FullTransformerBatch, HFObjects
from spacy_transformers.layers.transformer_model import (
    huggingface_from_pretrained,
    set_pytorch_transformer,
)
from spacy_transformers.layers._util import replace_listener, replace_listener_cfg
from thinc.api import Model
from thinc.types import Ragged
from transformers.utils import ModelOutput

from bertflow.errors import BertflowError, Errors
from bertflow.encoder.names import DEFAULT_ENCODER, resolve_encoder
from bertflow.encoder.batch import EncoderBatch
from bertflow.encoder.hf_calls import convert_inputs, convert_outputs, inference, train_in_buckets
from bertflow.encoder.precision import PRECISIONS, training_autocast
from bertflow.encoder.serialization import SafeHFWrapper, refuse_remote_code
from bertflow.encoder.windows import strided_windows
from bertflow.encoder.alignment import DocAligns
from bertflow.encoder.layout import layout_docs
from bertflow.encoder.tokenize import Tokenized, tokenize_docs


class EncoderModel(Model):
    """A thinc Model over ``List[Doc]`` returning an ``EncoderBatch``."""

    def __init__(
        self,
        name: str,
        get_windows: Callable,
        *,
        keep_layers: int = 1,
        precision: str = "fp32",
        int8_exclude: Sequence[str] = (),
        max_length: int = 0,
        max_pair_length: int = 0,
        mixed_precision: bool = False,
        grad_scaler_config: Optional[dict] = None,
        tokenizer_config: Optional[dict] = None,
        transformer_config: Optional[dict] = None,
    ):
        if precision not in PRECISIONS:
            raise BertflowError(Errors.E006.format(value=precision, options=", ".join(PRECISIONS)))
        refuse_remote_code(tokenizer_config or {}, "the encoder's tokenizer_config")
        refuse_remote_code(transformer_config or {}, "the encoder's transformer_config")
        tok_cfg = {"use_fast": True, **(tokenizer_config or {})}
        hf = HFObjects(None, None, None, tok_cfg, dict(transformer_config or {}))
        wrapper = SafeHFWrapper(
            hf,
            convert_inputs=convert_inputs,
            convert_outputs=convert_outputs,
            mixed_precision=mixed_precision,
            grad_scaler_config=dict(grad_scaler_config or {}),
        )
        super().__init__(
            "bertflow-encoder",
            forward,
            init=init,
            layers=[wrapper],
            dims={"nO": None},
            attrs={
                "name": str(name),
                "get_windows": get_windows,
                "keep_layers": int(keep_layers),
                "precision": precision,
                "int8_exclude": list(int8_exclude),
                "max_length": int(max_length),
                "max_pair_length": int(max_pair_length),
                "set_transformer": set_pytorch_transformer,
                "has_transformer": False,
                "flush_cache_chance": 0.0,
                "replace_listener": replace_listener,
                "replace_listener_cfg": replace_listener_cfg,
            },
        )
        self._init_args = dict(
            keep_layers=keep_layers, precision=precision, int8_exclude=list(int8_exclude), max_length=max_length,
            max_pair_length=max_pair_length, mixed_precision=mixed_precision,
            grad_scaler_config=grad_scaler_config, tokenizer_config=tokenizer_config,
            transformer_config=transformer_config,
        )

    # spacy-transformers keeps the HF objects on the shim; these properties are
    # the one place that reaches for them.
    @property
    def _hf(self) -> HFObjects:
        return self.layers[0].shims[0]._hfmodel

    @property
    def tokenizer(self):
        return self._hf.tokenizer

    @property
    def transformer(self) -> torch.nn.Module:
        return self._hf.transformer

    @property
    def _init_tokenizer_config(self) -> dict:
        return self._hf._init_tokenizer_config

    @property
    def _init_transformer_config(self) -> dict:
        return self._hf._init_transformer_config

    def copy(self) -> "EncoderModel":
        copied = EncoderModel(self.attrs["name"], self.attrs["get_windows"], **self._init_args)
        copied.layers[0] = copy.deepcopy(self.layers[0])
        copied.attrs["has_transformer"] = self.attrs["has_transformer"]
        if self.has_dim("nO"):
            copied.set_dim("nO", self.get_dim("nO"))
        return copied

    def from_bytes(self, bytes_data: bytes) -> "EncoderModel":
        """thinc restores saved attrs over the configured ones; ``precision`` is a
        run-time switch, so the config it was loaded with wins."""
        try:
            super().from_bytes(bytes_data)
        except BertflowError:
            raise
        except Exception as err:  # truncated or foreign bytes: thinc's msgpack or its structure check
            where = self.layers[0].shims[0].source
            raise BertflowError(Errors.E019.format(where=where, err=f"{type(err).__name__}: {err}")) from None
        self.attrs["precision"] = self._init_args["precision"]
        self.attrs["int8_exclude"] = list(self._init_args["int8_exclude"])
        self.attrs["int8_model"] = None
        return self

    def tokenize(self, docs: Sequence[Doc], *, strict: bool = True) -> List[Optional[Tokenized]]:
        """The docs' wordpieces (see ``wordpieces.tokenize_docs``)."""
        return tokenize_docs(self.tokenizer, docs, strict=strict)

    def tokenized_for(self, docs: Sequence[Doc], tokenized: Optional[Sequence[Optional[Tokenized]]] = None
                      ) -> List[Optional[Tokenized]]:
        """Each doc's wordpieces: the given ``tokenized`` entry, or tokenized now
        when it is None (docs without tokens stay None)."""
        known = list(tokenized) if tokenized is not None else [None] * len(docs)
        missing = [i for i, (doc, tok) in enumerate(zip(docs, known)) if tok is None and len(doc)]
        if missing:
            for i, tok in zip(missing, self.tokenize([docs[i] for i in missing])):
                known[i] = tok
        return known

    @property
    def max_length(self) -> int:
        """Longest row the model accepts, special tokens included."""
        configured = self.attrs["max_length"]
        limit = getattr(self.transformer.config, "max_position_embeddings", 512)
        tok_max = getattr(self.tokenizer, "model_max_length", limit) or limit
        natural = min(limit, tok_max if tok_max < 10**6 else limit)
        return min(configured, natural) if configured > 0 else natural


@registry.architectures("bertflow.Encoder.v1")
def Encoder(
    name: str = DEFAULT_ENCODER,
    get_windows: Optional[Callable] = None,
    keep_layers: int = 1,
    precision: str = "fp32",
    int8_exclude: List[str] = [],
    max_length: int = 0,
    max_pair_length: int = 0,
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    tokenizer_config: dict = {},
    transformer_config: dict = {},
) -> Model[List[Doc], FullTransformerBatch]:
    """The shared BERT encoder.

    name (str): encoder short name (``minilm-l6``), local model directory or hub
        name; see ``bertflow.encoder.names.resolve_encoder``. Default "minilm-l6".
    get_windows (Callable): windowing strategy, e.g. ``bertflow.strided_windows.v1``
        (default: window 256, stride 192 doc wordpieces).
    keep_layers (int): keep the hidden states of the last k layers for heads that
        mix or concatenate layers (1: only the last layer, the cheapest).
    precision (str): inference precision: "fp32"; "int8" (dynamic quantisation
        of the Linear layers, CPU only); "fp16" (autocast, GPU only); "bf16"
        (autocast, on a GPU or a CPU with native bf16 matmuls: AMX, AVX512-BF16).
        Where it can't apply it warns and runs fp32, so one config runs anywhere.
    int8_exclude (List[str]): Linear layers kept out of int8, by module name or
        name within every layer ("intermediate.dense": each FFN up-projection). They
        run in bf16 where the CPU multiplies bf16 natively (AMX, AVX512-BF16),
        else in fp32. Default: none (every Linear layer in int8).
    max_length (int): longest row in wordpieces incl. special tokens; 0 = the
        model's own limit.
    max_pair_length (int): most wordpieces of ``doc._.text_pair`` kept per row
        (longer pairs are cut, with a warning and ``trf_windows['pair_truncated']``);
        0 = half of max_length.
    mixed_precision (bool): reduced precision while training: fp16 autocast and gradient
        scaling on a GPU, bf16 autocast on a CPU with native bf16 matmuls (AMX,
        AVX512-BF16); fp32 on other CPUs (said once in the log).
    grad_scaler_config (dict): options for thinc's PyTorchGradScaler.
    tokenizer_config (dict): extra arguments for ``AutoTokenizer.from_pretrained``.
    transformer_config (dict): extra arguments for ``AutoConfig.from_pretrained``.
    """
    if get_windows is None:
        get_windows = strided_windows()
    return EncoderModel(
        name,
        get_windows,
        keep_layers=keep_layers,
        precision=precision,
        int8_exclude=int8_exclude,
        max_length=max_length,
        max_pair_length=max_pair_length,
        mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config,
        tokenizer_config=tokenizer_config,
        transformer_config=transformer_config,
    )


def load_pretrained(model: EncoderModel) -> None:
    """Resolve the encoder name and load tokenizer and weights into ``model``."""
    name = model.attrs["name"]
    path = resolve_encoder(name)
    try:
        hf = huggingface_from_pretrained(
            path, dict(model._init_tokenizer_config), dict(model._init_transformer_config)
        )
    except Exception as err:  # OSError, safetensors/torch load errors, bad configs
        raise BertflowError(Errors.E004.format(name=name, path=path, err=err)) from err
    if not getattr(hf.tokenizer, "is_fast", False):
        raise BertflowError(Errors.E008.format(name=name, cls=type(hf.tokenizer).__name__))
    model.attrs["set_transformer"](model, hf)


def init(model: EncoderModel, X=None, Y=None) -> None:
    if not model.attrs["has_transformer"]:
        load_pretrained(model)
    model.set_dim("nO", model.transformer.config.hidden_size)


class Pretokenized(NamedTuple):
    """The encoder model's input when the caller has tokenized the docs already
    (the encoder component tokenizes a buffer once, to sort it by length, and
    hands each batch its share); a plain ``List[Doc]`` is tokenized in the pass.
    ``tokenized[i]`` None: tokenize ``docs[i]`` in the pass."""

    docs: List[Doc]
    tokenized: List[Optional[Tokenized]]


def forward(model: EncoderModel, X: "List[Doc] | Pretokenized", is_train: bool) -> Tuple[EncoderBatch, Callable]:
    docs, tokenized = (list(X.docs), X.tokenized) if isinstance(X, Pretokenized) else (X, None)
    if not model.attrs["has_transformer"]:
        model.initialize()  # first use without nlp.initialize(): load the weights lazily
    tokenizer = model.tokenizer
    max_length = model.max_length
    max_pair = model.attrs["max_pair_length"] or max_length // 2
    wordpieces, doc_rows, doc_aligns, windows = layout_docs(
        tokenizer,
        docs,
        model.tokenized_for(docs, tokenized),
        max_length=max_length,
        max_pair_length=min(max_pair, max_length - 4),  # leave >= 1 doc wordpiece per row
        get_windows=model.attrs["get_windows"],
    )
    if len(wordpieces) == 0:
        return EncoderBatch.empty_for(len(docs), windows), lambda d_batch: docs
    keep = model.attrs["keep_layers"]
    if is_train:
        model.attrs["int8_model"] = None  # the weights are about to change
        with training_autocast(model):
            model_output, bp_output = train_in_buckets(model, wordpieces, keep)
    else:
        model_output, bp_output = inference(model, wordpieces, keep), None
    seq_len = wordpieces.input_ids.shape[1]
    batch = EncoderBatch(
        spans=[[doc[:]] if len(doc) else [] for doc in docs],
        wordpieces=wordpieces,
        model_output=model_output,
        align=_batch_align(doc_rows, doc_aligns, seq_len),
        doc_rows=doc_rows,
        doc_aligns=doc_aligns,
        windows=windows,
    )

    def backprop(d_output: ModelOutput) -> List[Doc]:
        if bp_output is not None:
            bp_output(d_output)
        return docs

    return batch, backprop


def _batch_align(doc_rows, doc_aligns, seq_len: int) -> Ragged:
    if isinstance(doc_aligns, DocAligns):  # flat already: shift each doc's indices to its first row
        row_start = numpy.asarray([start for start, _ in doc_rows], dtype="int64")
        shift = numpy.repeat(row_start * seq_len, doc_aligns.n_entries)
        return Ragged((doc_aligns.local + shift).astype("int32"), doc_aligns.token_lengths.astype("int32"))
    datas, lengths = [], []
    for (start, _), align in zip(doc_rows, doc_aligns):
        if align is not None:
            datas.append(align.data + start * seq_len)
            lengths.append(align.lengths)
    if not datas:
        return Ragged(numpy.zeros((0,), dtype="int32"), numpy.zeros((0,), dtype="int32"))
    return Ragged(numpy.concatenate(datas).astype("int32"), numpy.concatenate(lengths).astype("int32"))
