"""Layer selection over the encoder's outputs: the last layer, a learned
scalar mix of the last k layers, or their concatenation (the BERT paper's
feature-based NER concatenated the last four).

Works on ``List[TransformerData]`` and returns ``List[TransformerData]`` whose
``last_hidden_state`` is the selected representation, so spacy-transformers'
pooling (``trfs2arrays``) and bertflow's doc pooling apply unchanged.
"""
from typing import List

from spacy_transformers.data_classes import TransformerData
from thinc.api import Model
from transformers.utils import ModelOutput

from bertflow.errors import BertflowError, Errors

LAYER_MODES = ("last", "mix", "concat")


def check_layer_mode(mode: str) -> None:
    if mode not in LAYER_MODES:
        raise BertflowError(Errors.E010.format(mode=mode))


def select_layers(mode: str = "last", n_layers: int = 4, encoder: str = "encoder") -> Model[List[TransformerData], List[TransformerData]]:
    """mode (str): "last", "mix" or "concat". n_layers (int): k, the number of
    last layers mixed or concatenated (ignored for "last")."""
    check_layer_mode(mode)
    params = {"weights": None, "gamma": None} if mode == "mix" else {}
    return Model(
        f"select_layers({mode})",
        _forward,
        init=_init,
        params=params,
        attrs={"mode": mode, "n_layers": int(n_layers), "encoder": encoder},
    )


def output_width(mode: str, n_layers: int, width: int) -> int:
    return width * n_layers if mode == "concat" else width


def _init(model: Model, X=None, Y=None) -> None:
    if model.attrs["mode"] == "mix":
        k = model.attrs["n_layers"]
        model.set_param("weights", model.ops.alloc1f(k))  # softmax -> uniform mix
        model.set_param("gamma", model.ops.asarray1f([1.0]))


def _layers(model: Model, data: TransformerData) -> list:
    k = model.attrs["n_layers"]
    hidden = data.model_output.get("hidden_states")
    kept = len(hidden) if hidden is not None else 1
    if hidden is None or kept < k:
        raise BertflowError(Errors.E009.format(mode=model.attrs["mode"], k=k, kept=kept, encoder=model.attrs["encoder"]))
    return list(hidden[-k:])


def _forward(model: Model, trf_datas: List[TransformerData], is_train: bool):
    mode = model.attrs["mode"]
    if mode == "last":
        return trf_datas, lambda d: d
    xp = model.ops.xp
    live = [i for i, t in enumerate(trf_datas) if "last_hidden_state" in t.model_output]
    outputs = list(trf_datas)
    saved = {}
    if mode == "mix":
        w = model.get_param("weights")
        s = xp.exp(w - w.max())
        s /= s.sum()
        gamma = float(model.get_param("gamma")[0])
    for i in live:
        hs = _layers(model, trf_datas[i])
        saved[i] = hs
        if mode == "concat":
            combined = xp.concatenate(hs, axis=-1)
        else:
            combined = gamma * sum(float(s[j]) * h for j, h in enumerate(hs))
        outputs[i] = TransformerData(
            wordpieces=trf_datas[i].wordpieces,
            model_output=ModelOutput(last_hidden_state=combined),
            align=trf_datas[i].align,
        )

    def backprop(d_datas: List[TransformerData]) -> List[TransformerData]:
        targets = range(len(trf_datas)) if len(d_datas) == len(trf_datas) else live
        result = []
        d_w = xp.zeros((model.attrs["n_layers"],), dtype="f")
        d_gamma = 0.0
        for i, d_data in zip(targets, d_datas):
            dY = d_data.model_output.get("last_hidden_state")
            if dY is None:
                result.append(d_data)
                continue
            hs = saved[i]
            if mode == "concat":
                width = hs[0].shape[-1]
                grads = [dY[..., j * width: (j + 1) * width] for j in range(len(hs))]
            else:
                grads = [gamma * float(s[j]) * dY for j in range(len(hs))]
                d_s = xp.asarray([gamma * float((dY * h).sum()) for h in hs], dtype="f")
                d_w += s * (d_s - (s * d_s).sum())
                d_gamma += float(sum(float(s[j]) * float((dY * h).sum()) for j, h in enumerate(hs)))
            # One gradient per kept layer (right-aligned), so heads using
            # different k accumulate into the same encoder outputs.
            kept = len(trf_datas[i].model_output["hidden_states"])
            grads = [xp.zeros_like(hs[0]) for _ in range(kept - len(hs))] + grads
            result.append(TransformerData(
                wordpieces=d_data.wordpieces,
                model_output=ModelOutput(hidden_states=grads),
                align=d_data.align,
            ))
        if mode == "mix":
            model.inc_grad("weights", d_w)
            model.inc_grad("gamma", model.ops.asarray1f([d_gamma]))
        return result

    return outputs, backprop
