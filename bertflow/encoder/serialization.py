"""Saving and loading the encoder's Hugging Face objects without trusting the file.

A pipeline directory is data someone else may have written. Loading it must
never run its author's code or write outside a private temp dir, so the
encoder's bytes (``encoder/model``) are read here instead of by
spacy-transformers' ``HFShim.from_bytes``, which writes each tokenizer entry
to ``temp_dir / name`` (an absolute name escapes the temp dir), passes the
stored tokenizer kwargs on unchecked (``trust_remote_code`` imports a ``.py``
file from that dir) and unpickles the weights with ``torch.load``.

What loading may do: parse msgpack, write the tokenizer's files (plain names
only, no Python) into a fresh temp dir that is removed afterwards, build the
model class transformers itself ships for the stored config, and load the
weights as tensors only (``weights_only=True``). Anything else is refused
with ``UnsafeModelError`` naming the problem.
"""
import pickle
import threading
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping

import srsly
import torch
from spacy.util import SimpleFrozenDict
from spacy_transformers.data_classes import HFObjects
from spacy_transformers.layers.hf_shim import HFShim
from spacy_transformers.util import make_tempdir
from thinc.api import Model, PyTorchShim, get_torch_default_device
from thinc.layers.pytorchwrapper import forward as pt_forward

from bertflow.errors import BertflowError, Errors

# the only tokenizer kwargs spacy-transformers' to_bytes writes
SAFE_TOKENIZER_KWARGS = frozenset({"use_fast"})
REMOTE_CODE_KEYS = ("trust_remote_code", "auto_map")


class UnsafeModelError(BertflowError):
    """A saved encoder asks for something loading must never do (run code, write files)."""


def refuse_remote_code(settings: Mapping[str, Any], where: str) -> None:
    """Raise if ``settings`` (tokenizer/transformer kwargs or a config dict)
    would make transformers import code that ships with a model."""
    for key in REMOTE_CODE_KEYS:
        if settings.get(key):
            raise UnsafeModelError(Errors.E017.format(key=key, where=where))


def check_file_name(name: str, where: str) -> None:
    """A tokenizer file must be a plain file name, and not Python."""
    plain = (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
             and "\x00" not in name and Path(name).name == name and not Path(name).is_absolute())
    if not plain or name.endswith((".py", ".pyc", ".so")):
        raise UnsafeModelError(Errors.E018.format(name=name, where=where))


class SafeHFShim(HFShim):
    """spacy-transformers' shim with a ``from_bytes`` that trusts nothing in the bytes."""

    # the file the bytes came from, for error messages (the encoder component sets it in from_disk)
    source = "the encoder's saved weights (encoder/model)"

    def from_bytes(self, bytes_data: bytes) -> "SafeHFShim":
        # also installed as HFShim.from_bytes by guarded_hf_loading: a plain HFShim may lack ``source``
        where = str(getattr(self, "source", "a saved Hugging Face model"))
        try:
            msg = srsly.msgpack_loads(bytes_data)
        except Exception as err:  # truncated or not msgpack at all
            raise BertflowError(Errors.E019.format(where=where, err=err)) from None
        if not isinstance(msg, dict) or not {"config", "state", "tokenizer"} <= set(msg):
            raise BertflowError(Errors.E019.format(where=where, err="not a saved bertflow encoder"))
        for key in ("_init_tokenizer_config", "_init_transformer_config"):
            refuse_remote_code(msg.get(key) or {}, f"{where}, {key}")
        config_dict, tok_dict = msg["config"], dict(msg["tokenizer"] or {})
        if not config_dict:  # saved before initialization: names only, loaded on first use
            self._hfmodel = HFObjects(None, None, None, dict(msg.get("_init_tokenizer_config") or {}),
                                      dict(msg.get("_init_transformer_config") or {}))
            return self
        refuse_remote_code(config_dict, f"{where}, config")
        tok_kwargs = dict(tok_dict.pop("kwargs", None) or {})
        refuse_remote_code(tok_kwargs, f"{where}, tokenizer kwargs")
        unknown = set(tok_kwargs) - SAFE_TOKENIZER_KWARGS
        if unknown:
            raise UnsafeModelError(Errors.E020.format(keys=sorted(unknown), where=where,
                                                      allowed=sorted(SAFE_TOKENIZER_KWARGS)))
        for name in tok_dict:
            check_file_name(name, where)
        try:
            with make_tempdir() as temp_dir:
                srsly.write_json(temp_dir / "config.json", config_dict)
                config = self.config_cls.from_pretrained(str(temp_dir / "config.json"))
                for name, data in tok_dict.items():
                    (temp_dir / name).write_bytes(data)
                tokenizer = self.tokenizer_cls.from_pretrained(str(temp_dir), trust_remote_code=False, **tok_kwargs)
                vocab_file_contents = None
                if hasattr(tokenizer, "vocab_file"):
                    vocab_path = temp_dir / tokenizer.vocab_files_names["vocab_file"]
                    vocab_file_contents = vocab_path.read_bytes() if vocab_path.is_file() else None
            transformer = self.model_cls.from_config(config, trust_remote_code=False)
            device = get_torch_default_device()
            try:
                state = torch.load(BytesIO(msg["state"]), map_location=device, weights_only=True)
            except pickle.UnpicklingError as err:
                if "weights_only" not in str(err) and "GLOBAL" not in str(err):
                    raise
                raise UnsafeModelError(Errors.E025.format(where=where)) from None
            result = transformer.load_state_dict(state, strict=False)
            missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
            if missing:
                raise ValueError(f"no saved weights for {', '.join(missing[:5])}")
        except UnsafeModelError:
            raise
        except Exception as err:  # bad config, tokenizer files or weights
            raise BertflowError(Errors.E019.format(where=where, err=f"{type(err).__name__}: {err}")) from None
        transformer.to(device)
        self._hfmodel = HFObjects(tokenizer, transformer, vocab_file_contents, SimpleFrozenDict(),
                                  SimpleFrozenDict())
        self._model = transformer
        return self


_GUARD_LOCK = threading.Lock()
_GUARD_DEPTH = 0
_UNGUARDED_FROM_BYTES = HFShim.from_bytes


@contextmanager
def guarded_hf_loading() -> Iterator[None]:
    """While inside, every spacy-transformers ``HFShim`` (whatever component or
    architecture built it) reads its bytes with ``SafeHFShim.from_bytes``.

    spacy-transformers has no hook for how a shim loads, so its method is
    swapped for the duration and put back when the outermost guard exits
    (nested and concurrent guards share one swap)."""
    global _GUARD_DEPTH
    with _GUARD_LOCK:
        if _GUARD_DEPTH == 0:
            HFShim.from_bytes = SafeHFShim.from_bytes
        _GUARD_DEPTH += 1
    try:
        yield
    finally:
        with _GUARD_LOCK:
            _GUARD_DEPTH -= 1
            if _GUARD_DEPTH == 0:
                HFShim.from_bytes = _UNGUARDED_FROM_BYTES


def check_shims(nlp, path) -> None:
    """Refuse a pipeline with a framework shim that loading cannot check.

    Allowed: spacy-transformers' ``HFShim`` family (read by ``SafeHFShim.from_bytes``
    under ``guarded_hf_loading``) and thinc's plain ``PyTorchShim`` (its weights
    go through ``torch.load``, tensors only). TorchScript, TensorFlow, MXNet and
    any other shim may run code stored in the file, so they are refused by name.
    Each HF shim is told the file it reads, for its error messages."""
    for name, pipe in nlp.components:
        model = getattr(pipe, "model", None)
        if not isinstance(model, Model):
            continue
        for node in model.walk():
            for shim in node.shims:
                if isinstance(shim, HFShim):
                    shim.source = Path(path) / name / "model"
                elif type(shim) is not PyTorchShim:
                    raise UnsafeModelError(Errors.E127.format(path=path, name=name, cls=type(shim).__name__))


def SafeHFWrapper(hf: HFObjects, *, convert_inputs, convert_outputs, mixed_precision: bool,
                  grad_scaler_config: Dict[str, Any]) -> Model:
    """spacy-transformers' ``HFWrapper`` with the ``SafeHFShim``."""
    return Model(
        "hf-pytorch",
        pt_forward,
        attrs={"convert_inputs": convert_inputs, "convert_outputs": convert_outputs},
        shims=[SafeHFShim(hf, mixed_precision=mixed_precision, grad_scaler_config=grad_scaler_config)],
        dims={"nI": None, "nO": None},
    )


def checkpoint_tensors(directory, prefix: str) -> Dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix`` in the weight files of a
    local Hugging Face model directory (``*.safetensors``, else
    ``pytorch_model*.bin`` read with ``weights_only=True``): weights the base
    model does not load, such as a pre-training head's (``cls.predictions.``).
    {} for a directory without weight files, or a name that is not a directory."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    found: Dict[str, torch.Tensor] = {}
    safetensors_files = sorted(directory.glob("*.safetensors"))
    if safetensors_files:
        from safetensors import safe_open

        for file in safetensors_files:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    if key.startswith(prefix):
                        found[key] = handle.get_tensor(key)
        return found
    for file in sorted(directory.glob("pytorch_model*.bin")):
        state = torch.load(str(file), map_location="cpu", weights_only=True)
        found.update({k: v for k, v in state.items() if k.startswith(prefix)})
    return found
