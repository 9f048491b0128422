"""Precision at the torch level: what the encoder's ``precision`` switch and
``mixed_precision`` do to its modules.

- ``inference_precision``: which module and autocast a forward pass uses for
  "fp32", "int8" (dynamic quantisation of the Linear layers, CPU), "fp16"
  (GPU) and "bf16" (GPU, or a CPU with native bf16 matmuls: AMX, AVX512-BF16);
  where a switch can't apply it warns once and runs fp32.
- ``quantize_int8``: the int8 copy, with named layers kept out (``int8_exclude``,
  run in bf16 where the CPU has native bf16, else fp32) and each attention's
  query, key and value fused into one GEMM (``fuse_qkv``).
- ``training_autocast``: ``mixed_precision`` training: fp16 with gradient scaling on a GPU,
  bf16 autocast on a CPU with native bf16, fp32 elsewhere.

The pipeline-level guard (package a reduced-precision copy only if every head
stays within ``max_drop`` of fp32 on dev) is ``bertflow.compress.guard``.
"""
import copy
import logging
import warnings
from contextlib import nullcontext
from functools import lru_cache
from typing import ContextManager, Iterable, List, Optional, Sequence, Set, Tuple

import torch
from thinc.api import PyTorchGradScaler

from bertflow.errors import BertflowError, Errors, PrecisionWarning

logger = logging.getLogger("bertflow")

PRECISIONS = ("fp32", "int8", "fp16", "bf16")


def inference_precision(model) -> Tuple[torch.nn.Module, ContextManager]:
    """The module to run and the autocast context for the encoder's configured
    inference ``precision`` on its device: the int8 copy (CPU), fp16/bf16
    autocast (GPU; bf16 also on a CPU with native bf16), else the fp32 module
    with a warning (once per model) that the switch can't apply here."""
    transformer = model.transformer
    device = transformer.device
    precision = model.attrs["precision"]
    module, autocast = transformer, nullcontext()
    if precision == "int8":
        if device.type == "cpu":
            module = int8_model(model)
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
    return module, autocast


def _warn_precision(model, where: str, device) -> None:
    """An inference precision that can't apply here: warn once per model, then run fp32."""
    if model.attrs.get("precision_warned") != model.attrs["precision"]:
        model.attrs["precision_warned"] = model.attrs["precision"]
        warnings.warn(Errors.W002.format(precision=model.attrs["precision"], where=where, device=device),
                      PrecisionWarning)


def training_autocast(model) -> ContextManager:
    """What ``mixed_precision = true`` does to a training pass on the encoder's
    device: on a GPU, fp16 autocast with gradient scaling (thinc's PyTorchShim
    does both; this returns a no-op context); on a CPU with native bf16 matmuls
    (AMX, AVX512-BF16), bf16 autocast (bf16 keeps fp32's exponent range, so no
    gradient scaling); on any other CPU, fp32, said once in the log, so one
    config trains anywhere. The backward pass runs outside the context, in the
    dtypes autograd recorded. thinc's PyTorchShim has no public switch for its
    CUDA-only autocast and scaler; this is the one place that reaches into it."""
    shim = model.layers[0].shims[0]
    if model.transformer.device.type == "cuda":
        return nullcontext()
    if shim._mixed_precision:  # a GPU setting on the CPU: thinc's fp16 scaler must not run here
        shim._mixed_precision = False
        shim._grad_scaler = PyTorchGradScaler(enabled=False)
        shim.bertflow_train_bf16 = cpu_has_native_bf16()
        if shim.bertflow_train_bf16:
            logger.info("mixed_precision on %s: training in bf16 autocast (native bf16 matmuls)",
                        model.transformer.device)
        else:
            # on the CPU fp32 is then the intended run: say it once in the log, not as a warning on every
            # CPU run of a shipped config
            logger.info(Errors.W002.format(precision="mixed_precision",
                                           where="a GPU or a CPU with native bf16 matmuls (AMX, AVX512-BF16)",
                                           device=model.transformer.device))
    if getattr(shim, "bertflow_train_bf16", False):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


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
    suffer most from BERT's outlier channels, so the first ones to keep out of
    int8 when it costs accuracy (measured in benchmarks/BENCHMARKS.md)."""
    width = getattr(getattr(module, "config", None), "intermediate_size", None)
    return sorted({_name_in_layer(name) for name, m in module.named_modules()
                   if isinstance(m, torch.nn.Linear) and width and m.out_features == width})


def quantize_int8(module: torch.nn.Module, exclude: Sequence[str] = ()) -> torch.nn.Module:
    """A copy of ``module`` with its Linear layers dynamically quantised to int8,
    with per-channel weight scales (they lose less accuracy than per-tensor
    scales at the same speed).

    ``exclude`` keeps Linear layers out of int8 (full names or names within a
    layer, see ``excluded_linears``): they run in bf16 on a CPU with native bf16 matmuls,
    where that costs little speed, and in fp32 elsewhere.

    Each self-attention's query, key and value run as one int8 GEMM
    (``fuse_qkv``): the same numbers with a third of the attention's int8
    calls.

    The weights are packed for oneDNN when this torch has it: its int8 kernels
    use AMX/VNNI where the CPU has them, faster than the default x86/fbgemm
    packing there. A packed weight keeps its engine's kernels, so
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


def int8_model(model) -> torch.nn.Module:
    """The encoder's int8 copy, quantized on first use and kept until the weights change."""
    cached = model.attrs.get("int8_model")
    if cached is None:
        cached = quantize_int8(model.transformer, model.attrs.get("int8_exclude", ()))
        model.attrs["int8_model"] = cached  # not msgpack-able: thinc skips it on save
    return cached
