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
import logging
import os
import warnings
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

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
from thinc.api import Model, PyTorchGradScaler, xp2torch
from thinc.types import ArgsKwargs, Ragged
from transformers.file_utils import ModelOutput

from ..errors import BertflowError, Errors, PrecisionWarning
from ..registry import DEFAULT_ENCODER, resolve_encoder
from .batch import EncoderBatch
from .serialization import SafeHFWrapper, refuse_remote_code
from .windows import strided_windows
from .wordpieces import Tokenized, encode_docs, pad_rows, tokenize_docs

logger = logging.getLogger("bertflow")

PRECISIONS = ("fp32", "int8", "fp16", "bf16")


def _single_thread_after_fork() -> None:
    """A forked child (``nlp.pipe(n_process=N)`` forks on Linux) inherits
    torch's OpenMP thread pool in a broken state and hangs at its first
    parallel op; each worker runs single-threaded instead (the N workers
    share the cores anyway)."""
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_single_thread_after_fork)


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
        # docs tokenized ahead of the pass (see ``reuse_tokenization``): id -> (doc, Tokenized)
        self._pretokenized: Dict[int, Tuple[Doc, Optional[Tokenized]]] = {}
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

    @contextmanager
    def reuse_tokenization(self, docs: Sequence[Doc], tokenized: Sequence[Optional[Tokenized]]) -> Iterator[None]:
        """Within the block, a forward pass over any of these Doc objects uses
        their ``tokenized`` wordpieces instead of tokenizing them again (the
        encoder component tokenizes a buffer once to sort it by length, then
        encodes it batch by batch). Docs given None are tokenized as usual."""
        self._pretokenized = {id(doc): (doc, tok) for doc, tok in zip(docs, tokenized)}
        try:
            yield
        finally:
            self._pretokenized = {}

    def _tokenized_for(self, docs: List[Doc]) -> List[Optional[Tokenized]]:
        known = [self._pretokenized.get(id(doc)) for doc in docs]
        known = [entry[1] if entry is not None and entry[0] is doc else None for doc, entry in zip(docs, known)]
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
        name; see ``bertflow.registry.resolve_encoder``. Default "minilm-l6".
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
    mixed_precision (bool): fp16 autocast and gradient scaling while training (GPU).
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


def forward(model: EncoderModel, docs: List[Doc], is_train: bool) -> Tuple[EncoderBatch, Callable]:
    if not model.attrs["has_transformer"]:
        model.initialize()  # first use without nlp.initialize(): load the weights lazily
    tokenizer = model.tokenizer
    max_length = model.max_length
    max_pair = model.attrs["max_pair_length"] or max_length // 2
    encoded = encode_docs(
        tokenizer,
        docs,
        model._tokenized_for(docs),
        max_length=max_length,
        max_pair_length=min(max_pair, max_length - 4),  # leave >= 1 doc wordpiece per row
        get_windows=model.attrs["get_windows"],
    )
    windows = [e.windows if e is not None else None for e in encoded]
    wordpieces, doc_rows, doc_aligns = pad_rows(tokenizer, encoded)
    if len(wordpieces) == 0:
        return EncoderBatch.empty_for(len(docs), windows), lambda d_batch: docs
    keep = model.attrs["keep_layers"]
    if is_train:
        model.attrs["int8_model"] = None  # the weights are about to change
        _mixed_precision_needs_gpu(model)
        model_output, bp_output = model.layers[0]((wordpieces, keep), is_train)
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


def _batch_align(doc_rows, doc_aligns, seq_len: int) -> Ragged:
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
    out = ModelOutput(last_hidden_state=hf_output.last_hidden_state)
    if keep > 1:
        out["hidden_states"] = tuple(hf_output.hidden_states[-keep:])
    if getattr(hf_output, "pooler_output", None) is not None:
        # BERT's pretrained pooler (dense + tanh over [CLS]), one row per window
        out["pooler_output"] = hf_output.pooler_output
    return out


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
        return ArgsKwargs(args=(tuple(tensors),), kwargs={"grad_tensors": tuple(grads)})

    return output, backprop


def _warn_precision(model: EncoderModel, where: str, device) -> None:
    """An inference precision that can't apply here: warn once per model, then run fp32."""
    if model.attrs.get("precision_warned") != model.attrs["precision"]:
        model.attrs["precision_warned"] = model.attrs["precision"]
        warnings.warn(Errors.W002.format(precision=model.attrs["precision"], where=where, device=device),
                      PrecisionWarning)


def _mixed_precision_needs_gpu(model: EncoderModel) -> None:
    """``mixed_precision = true`` on a machine without a GPU: train in fp32 with a
    warning instead of failing, so one config runs on CPU and GPU. thinc's
    PyTorchShim has no public switch for this; this is the one place that
    reaches into it."""
    shim = model.layers[0].shims[0]
    if shim._mixed_precision and model.transformer.device.type != "cuda":
        # a training setting for the GPU: on the CPU fp32 is the intended run, so say it once in the log,
        # not as a warning on every CPU run of a shipped config
        logger.info(Errors.W002.format(precision="mixed_precision", where="a GPU", device=model.transformer.device))
        shim._mixed_precision = False
        shim._grad_scaler = PyTorchGradScaler(enabled=False)


def clip_encoder_gradients(model: EncoderModel, max_norm: float) -> None:
    """Clip the transformer's gradients to a global L2 norm (all its parameters
    together). Skipped while fp16 gradient scaling is active: the gradients are
    still scaled then, and thinc unscales them inside its optimizer step."""
    shim = model.layers[0].shims[0]
    # thinc's PyTorchGradScaler has no public "enabled" flag; read it once, here.
    scaling = getattr(shim._grad_scaler, "_enabled", False)
    if max_norm and max_norm > 0 and not scaling:
        torch.nn.utils.clip_grad_norm_(model.transformer.parameters(), max_norm)


class Bf16Linear(torch.nn.Module):
    """A Linear layer run in bf16 (weights stored in bf16), fp32 in and out: what
    ``quantize_int8`` puts where a layer is kept out of int8 on a CPU with native
    bf16 matmuls."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16))
        bias = linear.bias.detach().to(torch.bfloat16) if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x.to(torch.bfloat16), self.weight, self.bias).to(x.dtype)


# sibling Linear layers that read the same input in a transformer's self-attention
QKV_NAMES = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"), ("q_proj", "k_proj", "v_proj"))


class SharedInputProjection(torch.nn.Module):
    """Several Linear layers that read the same input (an attention block's
    query, key and value) as one Linear over their stacked weights: in int8 one
    GEMM and one activation quantisation instead of three, and the same numbers
    (the three shared the input's scale anyway). The product is computed once per
    input tensor and held until every part has taken its slice (holding the input
    keeps the identity check safe; dropping it then keeps nothing alive between
    passes)."""

    def __init__(self, linears: Sequence[torch.nn.Linear]):
        super().__init__()
        first = linears[0]
        self.sizes = [lin.out_features for lin in linears]
        self.fused = torch.nn.Linear(first.in_features, sum(self.sizes), bias=first.bias is not None,
                                     device=first.weight.device, dtype=first.weight.dtype)
        with torch.no_grad():
            self.fused.weight.copy_(torch.cat([lin.weight for lin in linears]))
            if first.bias is not None:
                self.fused.bias.copy_(torch.cat([lin.bias for lin in linears]))
        self._last: Optional[tuple] = None

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        if self._last is None or self._last[0] is not x:
            self._last = (x, self.fused(x).split(self.sizes, dim=-1), set())
        _, outputs, taken = self._last
        taken.add(index)
        if len(taken) == len(self.sizes):
            self._last = None
        return outputs[index]


class ProjectionPart(torch.nn.Module):
    """Output ``index`` of a ``SharedInputProjection``, in place of one of its
    Linear layers. The first part registers the projection (so it is quantised
    and counted once); the others only point at it."""

    def __init__(self, projection: SharedInputProjection, index: int):
        super().__init__()
        if index == 0:
            self.projection = projection
        else:
            self._projection = [projection]  # a list: not registered a second time
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projection = self.projection if self.index == 0 else self._projection[0]
        return projection.part(x, self.index)


def fuse_qkv(module: torch.nn.Module, skip: Set[str] = frozenset()) -> int:
    """Replace each self-attention's query/key/value Linear layers (BERT, DistilBERT
    and Llama-style names) by parts of one ``SharedInputProjection``, in place;
    layers named in ``skip`` stay as they are. RETURNS the number fused."""
    fused = 0
    for name, parent in list(module.named_modules()):
        for names in QKV_NAMES:
            linears = [getattr(parent, n, None) for n in names]
            full = [f"{name}.{n}" if name else n for n in names]
            if (all(type(lin) is torch.nn.Linear for lin in linears) and not skip.intersection(full)
                    and len({(lin.in_features, lin.bias is None) for lin in linears}) == 1):
                projection = SharedInputProjection(linears)
                for index, n in enumerate(names):
                    setattr(parent, n, ProjectionPart(projection, index))
                fused += 1
    return fused


def precision_devices(precision: str) -> str:
    """Where a reduced ``precision`` runs, in words (for warnings and errors)."""
    return {"int8": "the CPU", "fp16": "a GPU",
            "bf16": "a GPU or a CPU with native bf16 matmuls (AMX, AVX512-BF16)"}[precision]


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 matmuls natively on this CPU (AMX or AVX512-BF16);
    elsewhere bf16 is emulated and slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the probe
        return False


def excluded_linears(module: torch.nn.Module, exclude: Iterable[str]) -> Set[str]:
    """Names of the Linear layers of ``module`` that ``exclude`` names: in full
    (``encoder.layer.0.output.dense``) or by the name within every layer, after
    the layer index (``output.dense``: the FFN down-projection of each layer, not
    ``attention.output.dense``). An entry that names none is an error (a typo
    would otherwise quietly quantise everything)."""
    linears = [name for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
    chosen: Set[str] = set()
    for pattern in exclude:
        hits = {n for n in linears if pattern in (n, _name_in_layer(n))}
        if not hits:
            examples = ", ".join(sorted({_name_in_layer(n) for n in linears})[:8])
            raise BertflowError(Errors.E016.format(pattern=pattern, examples=examples))
        chosen |= hits
    return chosen


def _name_in_layer(name: str) -> str:
    """``encoder.layer.3.intermediate.dense`` -> ``intermediate.dense``: the part
    after the last layer index, which names that Linear in every layer."""
    parts = name.split(".")
    numeric = [i for i, part in enumerate(parts) if part.isdigit()]
    return ".".join(parts[numeric[-1] + 1:]) if numeric and numeric[-1] < len(parts) - 1 else name


def ffn_up_projections(module: torch.nn.Module) -> List[str]:
    """The within-layer names of the feed-forward up-projections (hidden -> intermediate
    size) of a transformer: the Linear layers whose per-tensor int8 activations
    suffer most from BERT's outlier channels (benchmarks/BENCHMARKS.md: on SST-2
    keeping them out of int8 cut the loss from 1.15 to 0.22 points)."""
    width = getattr(getattr(module, "config", None), "intermediate_size", None)
    return sorted({_name_in_layer(name) for name, m in module.named_modules()
                   if isinstance(m, torch.nn.Linear) and width and m.out_features == width})


def quantize_int8(module: torch.nn.Module, exclude: Sequence[str] = ()) -> torch.nn.Module:
    """A copy of ``module`` with its Linear layers dynamically quantised to int8,
    per-channel weight scales (on SST-2, minilm, 300 steps, per-tensor scales
    lost 1.6 points of macro F and per-channel 0.8, at the same speed).

    ``exclude`` keeps Linear layers out of int8 (full names or names within a
    layer, see ``excluded_linears``): they run in bf16 on a CPU with native bf16 matmuls,
    where that costs little speed, and in fp32 elsewhere.

    Each self-attention's query, key and value run as one int8 GEMM
    (``fuse_qkv``): the same numbers with a third of the attention's int8
    calls; the raw minilm forward gained ×1.07-×1.16 (medians of interleaved
    A/Bs at batch 32), a gain the pipeline's noise on the benchmark VM hides
    (benchmarks/BENCHMARKS.md, run 9).

    The weights are packed for oneDNN when this torch has it: its int8 kernels
    use AMX/VNNI where the CPU has them and ran the minilm forward 10-15% faster
    than the default x86/fbgemm packing on the benchmark machine
    (benchmarks/BENCHMARKS.md). A packed weight keeps its engine's kernels, so
    the process-wide ``torch.backends.quantized.engine`` is switched only while
    packing and put back: other quantised models in the process are untouched.
    """
    copied = copy.deepcopy(module).eval()
    kept = excluded_linears(copied, exclude)
    fuse_qkv(copied, kept)
    if kept and cpu_has_native_bf16():
        for name in kept:
            parent_name, _, child = name.rpartition(".")
            parent = copied.get_submodule(parent_name) if parent_name else copied
            setattr(parent, child, Bf16Linear(getattr(parent, child)))
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    spec = {name: qconfig for name, m in copied.named_modules()
            if isinstance(m, torch.nn.Linear) and name not in kept}
    engines = torch.backends.quantized.supported_engines
    previous = torch.backends.quantized.engine
    engine = "onednn" if "onednn" in engines else previous
    with warnings.catch_warnings():
        # recent torch points eager quantisation users at torchao; the API still works
        warnings.filterwarnings("ignore", message=r"torch\.(ao\.quantization|quantize_per)")
        torch.backends.quantized.engine = engine
        try:
            return torch.ao.quantization.quantize_dynamic(copied, spec, dtype=torch.qint8)
        finally:
            torch.backends.quantized.engine = previous


def _int8_model(model: EncoderModel) -> torch.nn.Module:
    cached = model.attrs.get("int8_model")
    if cached is None:
        cached = quantize_int8(model.transformer, model.attrs.get("int8_exclude", ()))
        model.attrs["int8_model"] = cached  # not msgpack-able: thinc skips it on save
    return cached


def _inference(model: EncoderModel, wordpieces, keep: int) -> ModelOutput:
    transformer = model.transformer
    device = transformer.device
    precision = model.attrs["precision"]
    module, autocast = transformer, nullcontext()
    if precision == "int8":
        if device.type == "cpu":
            module = _int8_model(model)
        else:
            _warn_precision(model, precision_devices(precision), device)
    elif precision in ("fp16", "bf16"):
        if device.type == "cuda":
            dtype = torch.float16 if precision == "fp16" else torch.bfloat16
            autocast = torch.autocast(device_type="cuda", dtype=dtype)
        elif precision == "bf16" and cpu_has_native_bf16():
            autocast = torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        else:
            _warn_precision(model, precision_devices(precision), device)
    # eval mode for the pass, then each module's own mode back (module.train(mode)
    # would set one mode on all); only modules in training mode are touched, none
    # once a pipeline is loaded (module.eval()/.train() cost 0.7 ms a batch here)
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
