"""The encoder's calls into the Hugging Face transformer: the training pass in
length buckets (no sentence padded to a long context), inference under
``torch.inference_mode`` in the encoder's precision, the outputs a forward
pass keeps (fp32, the last ``keep`` hidden states), and what training touches
in the transformer (the top layers that train, gradient clipping)."""
from typing import List, Optional

import torch
from thinc.api import xp2torch
from thinc.types import ArgsKwargs
from transformers.utils import ModelOutput

from bertflow.encoder.lengths import length_buckets
from bertflow.encoder.packed import packable, packed_forward
from bertflow.encoder.precision import inference_precision
from bertflow.errors import BertflowError, Errors


# inference buckets are tighter than training's: no backward pass to batch, and on a CPU a call over a few
# rows of like length costs less than padding them to a longer row (a 32-text serving batch: ×1.4 docs/s)
INFERENCE_BUCKET_RATIO = 1.5


def bucket_plan(wordpieces, ratio: float = 2.0) -> Optional[List[List[int]]]:
    """The batch's length buckets, or None when one call is as good (one
    bucket, or bucketing would save under a third of the padded positions)."""
    groups = length_buckets(wordpieces.lengths, ratio=ratio)
    padded = len(wordpieces.lengths) * wordpieces.input_ids.shape[1]
    bucketed = sum(len(g) * max(wordpieces.lengths[i] for i in g) for g in groups)
    return None if len(groups) == 1 or bucketed * 3 > padded * 2 else groups


def _rows(wordpieces, rows: List[int]):
    """The wordpieces of ``rows``, padded only to their own longest row."""
    width = max(wordpieces.lengths[i] for i in rows)
    return wordpieces.__class__(
        strings=[wordpieces.strings[i] for i in rows],
        input_ids=wordpieces.input_ids[rows, :width],
        attention_mask=wordpieces.attention_mask[rows, :width],
        lengths=[wordpieces.lengths[i] for i in rows],
        token_type_ids=None if wordpieces.token_type_ids is None else wordpieces.token_type_ids[rows, :width],
    ), width


def _merge(parts, n_rows: int, seq_len: int) -> ModelOutput:
    """The buckets' outputs as one batch in the original row order and padded shape."""
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
    return merged


def train_in_buckets(model, wordpieces, keep: int):
    """The transformer's training pass over ``wordpieces``, one call per
    length bucket where that saves padding; outputs and gradients keep the
    batch's row order and padded shape, so the heads see one batch."""
    groups = bucket_plan(wordpieces)
    if groups is None:
        return model.layers[0]((wordpieces, keep), True)
    parts = []
    for rows in groups:
        sub, width = _rows(wordpieces, rows)
        output, backprop = model.layers[0]((sub, keep), True)
        parts.append((torch.as_tensor(rows), width, output, backprop))
    merged = _merge(parts, *wordpieces.input_ids.shape)

    def backprop(d_output: ModelOutput):
        for rows, width, _, bp_part in parts:
            d_part = ModelOutput()
            for key, grad in d_output.items():
                cut = (lambda g: g[rows, :width] if g.dim() > 2 else g[rows])
                d_part[key] = cut(grad) if isinstance(grad, torch.Tensor) else tuple(cut(g) for g in grad)
            bp_part(d_part)

    return merged, backprop


def hf_kwargs(wordpieces, device, keep: int) -> dict:
    kwargs = {
        "input_ids": xp2torch(wordpieces.input_ids, device=device),
        "attention_mask": xp2torch(wordpieces.attention_mask, device=device),
        "output_hidden_states": keep > 1,
        "return_dict": True,
    }
    if wordpieces.token_type_ids is not None:
        kwargs["token_type_ids"] = xp2torch(wordpieces.token_type_ids, device=device)
    return kwargs


def select_outputs(hf_output, keep: int) -> ModelOutput:
    out = ModelOutput(last_hidden_state=fp32(hf_output.last_hidden_state))
    if keep > 1:
        out["hidden_states"] = tuple(fp32(h) for h in hf_output.hidden_states[-keep:])
    if getattr(hf_output, "pooler_output", None) is not None:
        # BERT's pretrained pooler (dense + tanh over [CLS]), one row per window
        out["pooler_output"] = fp32(hf_output.pooler_output)
    return out


def fp32(tensor: torch.Tensor) -> torch.Tensor:
    """The heads and the output store work in fp32: a bf16 output of an autocast
    pass is cast (inside the graph, so its gradient flows back in bf16)."""
    return tensor.float() if tensor.dtype == torch.bfloat16 else tensor


def convert_inputs(model, X, is_train):
    wordpieces, keep = X
    device = model.shims[0]._hfmodel.transformer.device
    return ArgsKwargs(args=(), kwargs=hf_kwargs(wordpieces, device, keep)), lambda dX: []


def convert_outputs(model, inputs_outputs, is_train):
    (_, keep), hf_output = inputs_outputs
    output = select_outputs(hf_output, keep)

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


def clip_encoder_gradients(model, max_norm: float) -> None:
    """Clip the transformer's gradients to a global L2 norm (all its parameters
    together). Skipped while fp16 gradient scaling is active: the gradients are
    still scaled then, and thinc unscales them inside its optimizer step."""
    shim = model.layers[0].shims[0]
    # thinc's PyTorchGradScaler has no public "enabled" flag; read it once, here.
    scaling = getattr(shim._grad_scaler, "_enabled", False)
    if max_norm and max_norm > 0 and not scaling:
        torch.nn.utils.clip_grad_norm_(model.transformer.parameters(), max_norm)


def inference(model, wordpieces, keep: int) -> ModelOutput:
    """The inference pass over a batch of texts of mixed lengths (e.g. a
    server's batch of whatever requests came in together) without paying for
    its padding: one padding-free call where the encoder is laid out as BERT
    (``bertflow.encoder.packed``), else one call per length bucket where that
    saves padding, merged back into one batch."""
    module, autocast = inference_precision(model)
    if packable(module):
        return _inference_call(model, wordpieces, keep, module, autocast, packed=True)
    groups = bucket_plan(wordpieces, ratio=INFERENCE_BUCKET_RATIO)
    if groups is None:
        return _inference_call(model, wordpieces, keep, module, autocast)
    parts = []
    for rows in groups:
        sub, width = _rows(wordpieces, rows)
        parts.append((torch.as_tensor(rows), width, _inference_call(model, sub, keep, module, autocast), None))
    return _merge(parts, *wordpieces.input_ids.shape)


def _inference_call(model, wordpieces, keep: int, module, autocast, packed: bool = False) -> ModelOutput:
    device = model.transformer.device
    # eval mode for the pass, then each module's own mode back (module.train(mode)
    # would set one mode on all); only modules in training mode are touched, none
    # once a pipeline is loaded (module.eval()/.train() walk every module, every batch)
    training = [m for m in module.modules() if m.training]
    for m in training:
        m.training = False
    try:
        with torch.inference_mode(), autocast:
            kwargs = hf_kwargs(wordpieces, device, keep)
            hf_output = packed_forward(module, kwargs["input_ids"], kwargs["attention_mask"],
                                       kwargs.get("token_type_ids"), keep) if packed else module(**kwargs)
    finally:
        for m in training:
            m.training = True
    out = select_outputs(hf_output, keep)
    for key, value in out.items():
        out[key] = value.float() if isinstance(value, torch.Tensor) else tuple(v.float() for v in value)
    return out
