"""Padding-free inference for BERT-family encoders.

A batch of texts of mixed lengths padded to its longest row spends most of
its time on padding: the projections and the feed-forward block, nearly all
of a short text's cost, run on every padded position. A server's batch is
whatever requests came in together, so it is mixed by nature (2,000 real
sentences in arrival order: twice as many padded wordpieces as real ones).

Here the real wordpieces of the whole batch are packed into one matrix and
every per-position block (the Q/K/V projections, the attention output, the
feed-forward block and their layer norms) runs on the packed rows only,
through the model's own modules (so an int8 copy or autocast applies as
usual). Only attention needs the rows laid out by text; it runs on groups of
rows of like length, each padded to its own longest row with padded keys
masked, and is the small part of the work for texts of a few dozen
wordpieces. Real positions get what the padded forward gives them;
padded positions are zeros.

It applies to encoders laid out as BERT (BERT, RoBERTa, ELECTRA, XLM-R and
their derivatives with absolute positions, no decoder, no hook on the
model's own forward); anything else runs the Hugging Face forward.
"""
import collections
from typing import Optional

import torch
from torch.nn import functional as F
from transformers.utils import ModelOutput

from bertflow.encoder.lengths import length_buckets

ATTENTION_BUCKET_RATIO = 1.5  # a 32-sentence batch as it arrives: +3.5 % texts/s over one padded attention
_LAYER_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output",
                "intermediate", "output")


def _part(module: torch.nn.Module, dotted: str) -> Optional[torch.nn.Module]:
    for name in dotted.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def packable(module: torch.nn.Module) -> bool:
    """Whether ``module`` is an encoder laid out as BERT, which ``packed_forward`` runs."""
    config = getattr(module, "config", None)
    layers = _part(module, "encoder.layer")
    if config is None or layers is None or not hasattr(module, "embeddings") or len(layers) == 0:
        return False
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return False
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False  # relative position scores live inside the attention this replaces
    if module._forward_hooks or module._forward_pre_hooks:
        return False  # someone watches the model's own forward: it runs as it is
    for layer in layers:
        if any(_part(layer, p) is None for p in _LAYER_PARTS):
            return False
        attention = layer.attention.self  # present: its query was found above
        if not hasattr(attention, "num_attention_heads") or not hasattr(attention, "attention_head_size"):
            return False
    return True


def packed_forward(module: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   token_type_ids: Optional[torch.Tensor] = None, keep: int = 1) -> ModelOutput:
    """The encoder's outputs for a padded batch, computed without the padding:
    ``last_hidden_state`` (B, L, H), the last ``keep`` of ``hidden_states``
    when ``keep > 1`` (the embeddings first, as Hugging Face counts them) and
    ``pooler_output`` where the model has a pooler. Call it under
    ``torch.inference_mode``: it is for inference only."""
    n_rows, width = input_ids.shape
    kwargs = {"input_ids": input_ids}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids
    embedded = module.embeddings(**kwargs)
    size = embedded.shape[-1]
    real = attention_mask.reshape(-1).nonzero().squeeze(1)
    hidden = embedded.reshape(n_rows * width, size).index_select(0, real)
    attend = attention_mask.bool()[:, None, None, :]  # keys a query may look at: the row's real ones
    lengths = [int(n) for n in attention_mask.sum(1).tolist()]
    # attention by groups of rows of like length, each as wide as its longest row
    groups = [(torch.as_tensor(rows, device=input_ids.device), max(lengths[i] for i in rows))
              for rows in length_buckets(lengths, ratio=ATTENTION_BUCKET_RATIO)]

    def attention_of(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        if len(groups) == 1:
            return F.scaled_dot_product_attention(query, key, value, attn_mask=attend)
        context = query.new_zeros(query.shape)
        for rows, group_width in groups:
            context[rows, :, :group_width] = F.scaled_dot_product_attention(
                query[rows, :, :group_width], key[rows, :, :group_width], value[rows, :, :group_width],
                attn_mask=attend[rows, :, :, :group_width])
        return context

    def laid_out(packed: torch.Tensor) -> torch.Tensor:
        full = packed.new_zeros((n_rows * width, packed.shape[-1]))
        full.index_copy_(0, real, packed)
        return full.view(n_rows, width, packed.shape[-1])

    states = collections.deque([hidden], maxlen=max(keep, 1))  # only the states that are kept stay alive
    for layer in module.encoder.layer:
        attention = layer.attention.self
        heads, head_size = attention.num_attention_heads, attention.attention_head_size

        def by_head(packed: torch.Tensor) -> torch.Tensor:
            return laid_out(packed).view(n_rows, width, heads, head_size).transpose(1, 2)

        query, key, value = (by_head(attention.query(hidden)), by_head(attention.key(hidden)),
                             by_head(attention.value(hidden)))
        context = attention_of(query, key, value)
        context = context.transpose(1, 2).reshape(n_rows * width, heads * head_size).index_select(0, real)
        attended = layer.attention.output(context, hidden)
        hidden = layer.output(layer.intermediate(attended), attended)
        states.append(hidden)
    last = laid_out(hidden)
    out = ModelOutput()
    out["last_hidden_state"] = last
    if keep > 1:
        out["hidden_states"] = tuple(laid_out(h) for h in list(states)[:-1]) + (last,)
    pooler = getattr(module, "pooler", None)
    if pooler is not None:
        out["pooler_output"] = pooler(last)
    return out
