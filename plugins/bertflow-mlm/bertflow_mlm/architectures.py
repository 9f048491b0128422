"""``bertflow.MaskedLMHead.v1``: BERT's pre-training heads on the shared encoder.

Masked LM: the hidden state at each masked position goes through a dense
layer, the encoder's activation and LayerNorm, then a decoder whose weight
*is* the encoder's input word-embedding matrix (tied, as in BERT: the head
adds only a bias per vocabulary entry). Next-sentence prediction (optional):
a linear layer over the pooled [CLS] (BERT's pooler output where the encoder
has one). The math is ``transformers``' ``BertForPreTraining`` heads', run in
torch so the tied decoder's gradient lands on the embedding parameter itself,
which the encoder's optimizer steps; the head's own weights are thinc
parameters, saved with the pipeline.
"""
from typing import Callable, List, NamedTuple, Optional, Tuple

import numpy
import torch
import torch.nn.functional as F
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from thinc.api import Model, torch2xp, xp2torch
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

from bertflow.api import encoder_output

OWN_PARAMS = ("W", "b", "g", "beta", "bias")  # dense (W, b), LayerNorm (g, beta), decoder bias
NSP_PARAMS = ("nsp_W", "nsp_b")


class MLMInput(NamedTuple):
    """The head's input: the docs, where to predict in each (an int array
    (k, 2) of (row, position) in the doc's encoder rows, or None), and the
    word-embedding matrix the decoder is tied to (a torch tensor (V, width))."""

    docs: List[Doc]
    positions: List[Optional[numpy.ndarray]]
    embeddings: torch.Tensor


@registry.architectures("bertflow.MaskedLMHead.v1")
def MaskedLMHead(next_sentence: bool = False, upstream: str = "*") -> Model:
    """BERT's masked-LM head (and with ``next_sentence`` its NSP head) over the
    shared encoder's last layer.

    next_sentence (bool): add the next-sentence classifier on the pooled [CLS].
    upstream (str): name of the encoder component, or "*" for any.
    Output: (masked-LM logits (n_targets, V), NSP logits (n_docs, 2) or None).
    """
    params = {name: None for name in OWN_PARAMS + (NSP_PARAMS if next_sentence else ())}
    return Model(
        "bertflow-mlm-head",
        _forward,
        init=_init,
        layers=[encoder_output("last", 1, upstream)],
        params=params,
        dims={"nI": None, "nV": None},
        attrs={"next_sentence": bool(next_sentence), "act": "gelu", "eps": 1e-12},
    )


def _init(model: Model, X=None, Y=None) -> None:
    """The weights come from the component's ``initialize`` (they need the encoder's
    width, vocabulary and checkpoint); this only checks that they did."""
    if not model.has_dim("nI"):
        raise ValueError("bertflow.MaskedLMHead.v1 is initialized by its component (bertflow_mlm).")


def init_head(model: Model, *, width: int, vocab_size: int, act: str, eps: float, init_range: float,
              seed: int = 0) -> None:
    """Fresh weights as ``transformers`` initialises BERT's heads: dense and
    NSP weights ~ N(0, init_range), biases 0, LayerNorm 1/0."""
    model.set_dim("nI", width)
    model.set_dim("nV", vocab_size)
    model.attrs["act"], model.attrs["eps"] = str(act), float(eps)
    rng = numpy.random.default_rng(seed)
    model.set_param("W", rng.normal(0.0, init_range, (width, width)).astype("float32"))
    model.set_param("b", numpy.zeros((width,), dtype="float32"))
    model.set_param("g", numpy.ones((width,), dtype="float32"))
    model.set_param("beta", numpy.zeros((width,), dtype="float32"))
    model.set_param("bias", numpy.zeros((vocab_size,), dtype="float32"))
    if model.attrs["next_sentence"]:
        model.set_param("nsp_W", rng.normal(0.0, init_range, (2, width)).astype("float32"))
        model.set_param("nsp_b", numpy.zeros((2,), dtype="float32"))
    listener = model.layers[0].layers[0]
    if listener.has_dim("nO") is not True:
        listener.set_dim("nO", width)


def _forward(model: Model, X: MLMInput, is_train: bool):
    datas, bp_listener = model.layers[0](X.docs, is_train)
    scores, bp_head = head_scores(model, datas, X.positions, X.embeddings, is_train)

    def backprop(d_scores):
        return bp_listener(bp_head(d_scores))

    return scores, backprop


def _pooled(data: TransformerData, xp, width: int):
    out = data.model_output
    if "pooler_output" in out and out["pooler_output"].size:
        return out["pooler_output"][0], "pooler_output"
    if "last_hidden_state" in out and out["last_hidden_state"].size:
        return out["last_hidden_state"][0, 0], "last_hidden_state"
    return xp.zeros((width,), dtype="float32"), None


def head_scores(model: Model, datas: List[TransformerData], positions: List[Optional[numpy.ndarray]],
                embeddings: torch.Tensor, is_train: bool) -> Tuple[tuple, Callable]:
    """The head on encoder outputs: (masked-LM logits, NSP logits or None), and
    the backprop to per-doc output gradients."""
    xp = model.ops.xp
    width = model.get_dim("nI")
    parts, where = [], []
    for i, (data, pos) in enumerate(zip(datas, positions)):
        if pos is None or not len(pos) or "last_hidden_state" not in data.model_output:
            continue
        rows, cols = xp.asarray(pos[:, 0]), xp.asarray(pos[:, 1])
        parts.append(data.model_output["last_hidden_state"][rows, cols])
        where.append((i, rows, cols))
    gathered = xp.concatenate(parts) if parts else xp.zeros((0, width), dtype="float32")
    nsp = model.attrs["next_sentence"]
    pooled = [_pooled(data, xp, width) for data in datas] if nsp else []
    device = embeddings.device
    track = bool(is_train)
    with torch.set_grad_enabled(track):
        # fp32 whatever the encoder ran in (fp16 autocast on a GPU): the head's weights and loss are fp32
        H = xp2torch(xp.ascontiguousarray(gathered, dtype="float32"), requires_grad=track).to(device)
        tensors = {name: xp2torch(model.get_param(name), requires_grad=track).to(device)
                   for name in OWN_PARAMS + (NSP_PARAMS if nsp else ())}
        h = F.linear(H, tensors["W"], tensors["b"])
        h = ACT2FN[model.attrs["act"]](h)
        h = F.layer_norm(h, (width,), tensors["g"], tensors["beta"], model.attrs["eps"])
        E = embeddings if (track and embeddings.requires_grad) else embeddings.detach()
        E = E.float()
        logits = h @ E.t() + tensors["bias"]
        nsp_logits = P = None
        if nsp:
            P = xp2torch(xp.stack([p for p, _ in pooled]).astype("float32") if pooled
                         else xp.zeros((0, width), dtype="float32"), requires_grad=track).to(device)
            nsp_logits = F.linear(P, tensors["nsp_W"], tensors["nsp_b"])
    scores = (torch2xp(logits.detach().float()), torch2xp(nsp_logits.detach().float()) if nsp else None)

    def backprop(d_scores) -> List[TransformerData]:
        d_logits, d_nsp = d_scores
        outs, grads = [], []
        if logits.numel():
            outs.append(logits)
            grads.append(xp2torch(xp.ascontiguousarray(d_logits)).to(device).to(logits.dtype))
        if nsp and nsp_logits.numel() and d_nsp is not None:
            outs.append(nsp_logits)
            grads.append(xp2torch(xp.ascontiguousarray(d_nsp)).to(device).to(nsp_logits.dtype))
        if outs:
            torch.autograd.backward(outs, grads)
        for name, tensor in tensors.items():
            if tensor.grad is not None:
                model.inc_grad(name, torch2xp(tensor.grad))
        d_gathered = torch2xp(H.grad) if outs and H.grad is not None else None
        d_pooled = torch2xp(P.grad) if nsp and outs and P.grad is not None else None
        result = []
        offsets = {}
        start = 0
        for i, rows, cols in where:
            offsets[i] = (start, rows, cols)
            start += len(rows)
        for i, data in enumerate(datas):
            grad = ModelOutput()
            hidden = data.model_output.get("last_hidden_state")
            if hidden is not None and hidden.size:
                d_hidden = xp.zeros(hidden.shape, dtype="float32")
                if d_gathered is not None and i in offsets:
                    s, rows, cols = offsets[i]
                    d_hidden[rows, cols] = d_gathered[s: s + len(rows)]  # positions are distinct
                grad["last_hidden_state"] = d_hidden
                if d_pooled is not None and pooled[i][1] is not None:
                    if pooled[i][1] == "pooler_output":
                        d_pool = xp.zeros(data.model_output["pooler_output"].shape, dtype="float32")
                        d_pool[0] = d_pooled[i]
                        grad["pooler_output"] = d_pool
                    else:
                        d_hidden[0, 0] += d_pooled[i]
            result.append(TransformerData(wordpieces=data.wordpieces, model_output=grad, align=data.align))
        return result

    return scores, backprop
