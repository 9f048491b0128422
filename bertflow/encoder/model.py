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
from thinc.api import Model, xp2torch
from thinc.types import ArgsKwargs, Ragged
from transformers.utils import ModelOutput

from bertflow.errors import BertflowError, Errors
from bertflow.encoder.names import DEFAULT_ENCODER, resolve_encoder
from bertflow.encoder.batch import EncoderBatch
from bertflow.encoder.precision import PRECISIONS, inference_precision, training_autocast
from bertflow.encoder.serialization import SafeHFWrapper, refuse_remote_code
from bertflow.encoder.windows import strided_windows
from bertflow.encoder.wordpieces import DocAligns, Tokenized, layout_docs, tokenize_docs



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
            convert_inputs=_convert_inputs,
            convert_outputs=_convert_outputs,
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
            model_output, bp_output = _train_in_buckets(model, wordpieces, keep)
    else:
        model_output, bp_output = _inference(model, wordpieces, keep), None
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


def length_buckets(lengths: Sequence[int], min_rows: int = 4) -> List[List[int]]:
    """Row indices grouped so that rows of very different lengths are not
    padded to each other: sorted by length, a new group starts where a row is
    more than twice as long as the group's shortest row (and the group has
    ``min_rows`` rows, so a few odd lengths do not cost a call each). A mixed
    multitask batch (SQuAD contexts of ~200 wordpieces next to SST-2
    sentences of ~20) would otherwise pad every sentence to the context.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: List[List[int]] = []
    for i in order:
        if groups and (lengths[i] <= 2 * lengths[groups[-1][0]] or len(groups[-1]) < min_rows):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _train_in_buckets(model: EncoderModel, wordpieces, keep: int):
    """The transformer's training pass over ``wordpieces``, one call per
    length bucket where that saves padding; outputs and gradients keep the
    batch's row order and padded shape, so the heads see one batch."""
    groups = length_buckets(wordpieces.lengths)
    padded = len(wordpieces.lengths) * wordpieces.input_ids.shape[1]
    bucketed = sum(len(g) * max(wordpieces.lengths[i] for i in g) for g in groups)
    if len(groups) == 1 or bucketed * 3 > padded * 2:  # saves under a third: one call
        return model.layers[0]((wordpieces, keep), True)
    parts = []
    for rows in groups:
        width = max(wordpieces.lengths[i] for i in rows)
        sub = wordpieces.__class__(
            strings=[wordpieces.strings[i] for i in rows],
            input_ids=wordpieces.input_ids[rows, :width],
            attention_mask=wordpieces.attention_mask[rows, :width],
            lengths=[wordpieces.lengths[i] for i in rows],
            token_type_ids=None if wordpieces.token_type_ids is None else wordpieces.token_type_ids[rows, :width],
        )
        output, backprop = model.layers[0]((sub, keep), True)
        parts.append((torch.as_tensor(rows), width, output, backprop))
    n_rows, seq_len = wordpieces.input_ids.shape

    def gather(get) -> torch.Tensor:
        first = get(parts[0][2])
        full = first.new_zeros((n_rows, seq_len) + tuple(first.shape[2:])) if first.dim() > 2 \
            else first.new_zeros((n_rows,) + tuple(first.shape[1:]))
        for rows, width, output, _ in parts:
            value = get(output).detach()
            if value.dim() > 2:
                full[rows, :width] = value
            else:
                full[rows] = value
        return full

    merged = ModelOutput()
    for key, value in parts[0][2].items():
        if isinstance(value, torch.Tensor):
            merged[key] = gather(lambda out, key=key: out[key])
        else:
            merged[key] = tuple(gather(lambda out, key=key, k=k: out[key][k]) for k in range(len(value)))

    def backprop(d_output: ModelOutput):
        for rows, width, _, bp_part in parts:
            d_part = ModelOutput()
            for key, grad in d_output.items():
                cut = (lambda g: g[rows, :width] if g.dim() > 2 else g[rows])
                d_part[key] = cut(grad) if isinstance(grad, torch.Tensor) else tuple(cut(g) for g in grad)
            bp_part(d_part)

    return merged, backprop


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


def _hf_kwargs(wordpieces, device, keep: int) -> dict:
    kwargs = {
        "input_ids": xp2torch(wordpieces.input_ids, device=device),
        "attention_mask": xp2torch(wordpieces.attention_mask, device=device),
        "output_hidden_states": keep > 1,
        "return_dict": True,
    }
    if wordpieces.token_type_ids is not None:
        kwargs["token_type_ids"] = xp2torch(wordpieces.token_type_ids, device=device)
    return kwargs


def _select_outputs(hf_output, keep: int) -> ModelOutput:
    out = ModelOutput(last_hidden_state=_fp32(hf_output.last_hidden_state))
    if keep > 1:
        out["hidden_states"] = tuple(_fp32(h) for h in hf_output.hidden_states[-keep:])
    if getattr(hf_output, "pooler_output", None) is not None:
        # BERT's pretrained pooler (dense + tanh over [CLS]), one row per window
        out["pooler_output"] = _fp32(hf_output.pooler_output)
    return out


def _fp32(tensor: torch.Tensor) -> torch.Tensor:
    """The heads and the output store work in fp32: a bf16 output of an autocast
    pass is cast (inside the graph, so its gradient flows back in bf16)."""
    return tensor.float() if tensor.dtype == torch.bfloat16 else tensor


def _convert_inputs(model, X, is_train):
    wordpieces, keep = X
    device = model.shims[0]._hfmodel.transformer.device
    return ArgsKwargs(args=(), kwargs=_hf_kwargs(wordpieces, device, keep)), lambda dX: []


def _convert_outputs(model, inputs_outputs, is_train):
    (_, keep), hf_output = inputs_outputs
    output = _select_outputs(hf_output, keep)

    def backprop(d_output: ModelOutput) -> ArgsKwargs:
        tensors, grads = [], []
        for key, grad in d_output.items():
            value = output[key]
            if isinstance(value, torch.Tensor):
                tensors.append(value)
                grads.append(grad)
            else:
                tensors.extend(value)
                grads.extend(grad)
        # a kept layer below the trainable ones (keep_layers > trainable_layers) has no graph: its
        # gradient would only reach frozen weights, and autograd refuses a tensor without one
        live = [(t, g) for t, g in zip(tensors, grads) if t.requires_grad]
        if live and len(live) < len(tensors):
            tensors, grads = [t for t, _ in live], [g for _, g in live]
        return ArgsKwargs(args=(tuple(tensors),), kwargs={"grad_tensors": tuple(grads)})

    return output, backprop


def train_top_layers(transformer: torch.nn.Module, n: int) -> None:
    """Let only the top ``n`` transformer layers (and the pooler above them)
    train; the embeddings and the layers below keep their pre-trained weights.
    0 trains every parameter. Frozen parameters get no gradient, so the
    backward pass stops at the lowest trainable layer and the optimizer skips
    them (the 12M-parameter embedding matrix of a MiniLM among them)."""
    if n == 0:
        for param in transformer.parameters():
            param.requires_grad_(True)
        return
    layers = next((m for m in transformer.modules() if isinstance(m, torch.nn.ModuleList)
                   and len(m) == getattr(transformer.config, "num_hidden_layers", -1)), None)
    if layers is None:
        raise BertflowError(Errors.E078.format(kind=type(transformer).__name__))
    if not 0 < n <= len(layers):
        raise BertflowError(Errors.E079.format(n=n, total=len(layers)))
    trainable = {id(p) for layer in layers[len(layers) - n:] for p in layer.parameters()}
    for name, param in transformer.named_parameters():
        param.requires_grad_(id(param) in trainable or name.startswith("pooler."))


def clip_encoder_gradients(model: EncoderModel, max_norm: float) -> None:
    """Clip the transformer's gradients to a global L2 norm (all its parameters
    together). Skipped while fp16 gradient scaling is active: the gradients are
    still scaled then, and thinc unscales them inside its optimizer step."""
    shim = model.layers[0].shims[0]
    # thinc's PyTorchGradScaler has no public "enabled" flag; read it once, here.
    scaling = getattr(shim._grad_scaler, "_enabled", False)
    if max_norm and max_norm > 0 and not scaling:
        torch.nn.utils.clip_grad_norm_(model.transformer.parameters(), max_norm)


def _inference(model: EncoderModel, wordpieces, keep: int) -> ModelOutput:
    device = model.transformer.device
    module, autocast = inference_precision(model)
    # eval mode for the pass, then each module's own mode back (module.train(mode)
    # would set one mode on all); only modules in training mode are touched, none
    # once a pipeline is loaded (module.eval()/.train() walk every module, every batch)
    training = [m for m in module.modules() if m.training]
    for m in training:
        m.training = False
    try:
        with torch.inference_mode(), autocast:
            hf_output = module(**_hf_kwargs(wordpieces, device, keep))
    finally:
        for m in training:
            m.training = True
    out = _select_outputs(hf_output, keep)
    for key, value in out.items():
        out[key] = value.float() if isinstance(value, torch.Tensor) else tuple(v.float() for v in value)
    return out
