"""``PretrainedCopy``: a frozen copy of an encoder's transformer as it was
before training, for heads that must be able to fall back on it.

Fine-tuning a shared encoder for several heads moves its top layers; a head
whose untrained output is already good (the sentence embedding of a model
trained for it) can end up worse than before training. Such a head takes a
copy at ``initialize`` (before any step), compares both on dev, and keeps the
copy only if it wins. The copy runs the same wordpiece rows the shared pass
ran for each doc (``doc._.trf_data.wordpieces``), so a head's pooling over its
output gives exactly what the untrained pipeline gave.

Saved as msgpack: the transformer's config and its weights as safetensors.
Loading builds the model class transformers ships for that config and reads
tensors only: no pickle, no code from the file (``bertflow.api.refuse_remote_code``).
"""
import copy
from typing import List, Sequence

import numpy
import srsly
import torch
from spacy_transformers.data_classes import TransformerData

from bertflow.api import BertflowError, listening_heads, refuse_remote_code

from .errors import Errors

ROWS_PER_CALL = 64


class PretrainedCopy:
    """A frozen transformer that recomputes ``last_hidden_state`` for docs
    the shared encoder already encoded (their rows, windows and alignment)."""

    def __init__(self, transformer: torch.nn.Module):
        self.transformer = transformer.eval()
        for param in self.transformer.parameters():
            param.requires_grad_(False)

    @classmethod
    def of_encoder(cls, nlp, head: str) -> "PretrainedCopy":
        """A copy of the transformer of the encoder ``head`` listens to, as it
        is now: take it in the head's ``initialize``, before training moves it."""
        heads = listening_heads(nlp)
        if head not in heads:
            raise BertflowError(Errors.SIM017.format(name=head, heads=sorted(heads)))
        return cls(copy.deepcopy(nlp.get_pipe(heads[head]).model.transformer))

    def last_hidden_states(self, datas: Sequence[TransformerData]) -> List[numpy.ndarray]:
        """Per doc, the copy's last hidden state over the doc's rows, shaped like
        its ``model_output["last_hidden_state"]`` (rows, seq_len, width); rows
        of all docs go through in length-sorted calls of ``ROWS_PER_CALL``."""
        rows = []  # (doc, row, length)
        for d, data in enumerate(datas):
            lengths = _host(data.wordpieces.lengths).astype("int64")
            rows.extend((d, r, int(n)) for r, n in enumerate(lengths))
        width = self.transformer.config.hidden_size
        out = [numpy.zeros(tuple(data.wordpieces.input_ids.shape) + (width,), dtype="float32") for data in datas]
        device = next(self.transformer.parameters()).device
        rows.sort(key=lambda row: row[2])
        for start in range(0, len(rows), ROWS_PER_CALL):
            chunk = rows[start: start + ROWS_PER_CALL]
            seq = max(n for _, _, n in chunk)
            ids = numpy.zeros((len(chunk), seq), dtype="int64")
            mask = numpy.zeros((len(chunk), seq), dtype="int64")
            types = None
            for i, (d, r, n) in enumerate(chunk):
                wp = datas[d].wordpieces
                ids[i, :n] = _host(wp.input_ids[r, :n])
                mask[i, :n] = 1
                if wp.token_type_ids is not None:
                    types = numpy.zeros((len(chunk), seq), dtype="int64") if types is None else types
                    types[i, :n] = _host(wp.token_type_ids[r, :n])
            kwargs = {"input_ids": torch.as_tensor(ids, device=device),
                      "attention_mask": torch.as_tensor(mask, device=device)}
            if types is not None:
                kwargs["token_type_ids"] = torch.as_tensor(types, device=device)
            with torch.inference_mode():
                hidden = self.transformer(**kwargs).last_hidden_state.float().cpu().numpy()
            for i, (d, r, n) in enumerate(chunk):
                out[d][r, :n] = hidden[i, :n]
        return out

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.transformer.state_dict().items()}
        return srsly.msgpack_dumps({"config": self.transformer.config.to_dict(), "weights": save(state)})

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "the saved encoder copy") -> "PretrainedCopy":
        from safetensors.torch import load
        from transformers import AutoConfig, AutoModel

        try:
            msg = srsly.msgpack_loads(data)
            config, weights = dict(msg["config"]), msg["weights"]
        except Exception as err:  # truncated, not msgpack, or another file
            raise BertflowError(Errors.SIM018.format(where=where, err=err)) from None
        refuse_remote_code(config, where)
        model_type = config.pop("model_type", None)
        if not model_type:
            raise BertflowError(Errors.SIM018.format(where=where, err="its config names no model_type"))
        for key in ("architectures", "_name_or_path", "transformers_version"):
            config.pop(key, None)
        transformer = AutoModel.from_config(AutoConfig.for_model(model_type, **config))
        transformer.load_state_dict(load(weights), strict=True)
        return cls(transformer)


def _host(array) -> numpy.ndarray:
    """A numpy copy of a numpy or cupy array (a GPU pipeline's wordpieces are cupy)."""
    return array.get() if hasattr(array, "get") else numpy.asarray(array)
