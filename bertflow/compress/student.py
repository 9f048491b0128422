"""The student of ``bertflow distill``: the teacher's pipeline with a shorter
encoder (K of the teacher's own layers, spread evenly as DistilBERT picked
them, or another encoder of the teacher's vocabulary and width), with a copy
of every head, and which of those heads take part in the distillation."""
import copy
import math
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from bertflow.encoder.pipes import encoder_components, listening_heads
from bertflow.errors import BertflowError, Errors


def student_layer_indices(n_layers: int, k: int) -> List[int]:
    """The teacher layers a K-layer student starts from: K indices spread
    evenly from the first layer to the last (``floor(i (n-1)/(K-1) + 0.5)``).
    For 12 -> 6 that is DistilBERT's choice [0, 2, 4, 7, 9, 11]; 6 -> 3 gives
    [0, 3, 5]; K = 1 keeps the last layer."""
    if not 1 <= k <= n_layers:
        raise BertflowError(Errors.E104.format(k=k, n=n_layers))
    if k == 1:
        return [n_layers - 1]
    return [int(math.floor(i * (n_layers - 1) / (k - 1) + 0.5)) for i in range(k)]


def parse_layers(spec: Union[int, str, Sequence[int], None], n_layers: int) -> List[int]:
    """``--student-layers``: a count K (see ``student_layer_indices``) or the
    teacher layer indices themselves, e.g. "0,2,4" (in order, no repeats)."""
    if spec is None:
        return student_layer_indices(n_layers, max(1, n_layers // 2))
    if isinstance(spec, str) and "," not in spec.strip() and spec.strip().lstrip("-").isdigit():
        spec = int(spec)
    if isinstance(spec, int):
        return student_layer_indices(n_layers, spec)
    try:
        indices = [int(i) for i in (spec.split(",") if isinstance(spec, str) else spec)]
    except ValueError:
        indices = []
    if not indices or indices != sorted(set(indices)) or indices[0] < 0 or indices[-1] >= n_layers:
        example = ",".join(map(str, student_layer_indices(n_layers, max(1, min(3, n_layers)))))  # valid for this teacher
        raise BertflowError(Errors.E105.format(spec=spec, n=n_layers, example=example))
    return indices


def layer_stack(transformer):
    """The ``nn.ModuleList`` of transformer blocks (BERT/RoBERTa/ELECTRA:
    ``encoder.layer``; DistilBERT: ``transformer.layer``) and its owner."""
    import torch

    for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        owner, parts = transformer, path.split(".")
        for part in parts[:-1]:
            owner = getattr(owner, part, None)
        stack = getattr(owner, parts[-1], None) if owner is not None else None
        if isinstance(stack, torch.nn.ModuleList):
            return owner, parts[-1], stack
    raise BertflowError(Errors.E106.format(cls=type(transformer).__name__))


def keep_layers(transformer, indices: List[int]) -> None:
    """Cut ``transformer`` (in place) down to the blocks at ``indices``; its
    config says the new depth, so the saved student loads as a K-layer model."""
    import torch

    owner, attr, stack = layer_stack(transformer)
    setattr(owner, attr, torch.nn.ModuleList([stack[i] for i in indices]))
    for key in ("num_hidden_layers", "n_layers"):
        if hasattr(transformer.config, key):
            setattr(transformer.config, key, len(indices))


def check_apart(out_path: Path, teacher) -> None:
    """Refuse an output that is, holds or sits inside the teacher's directory
    (E115), before anything is written; a teacher that is no path (a package
    name, a loaded pipeline) is apart by definition."""
    if isinstance(teacher, (str, Path)) and Path(teacher).exists():
        here, there = Path(out_path).resolve(), Path(teacher).resolve()
        if here == there or there in here.parents or here in there.parents:
            raise BertflowError(Errors.E115.format(out=out_path, teacher=teacher))


def copy_pipeline(nlp):
    """A separate, identical pipeline (config, vocab, weights) built from bytes."""
    from spacy.util import load_model_from_config

    copied = load_model_from_config(nlp.config, auto_fill=False, validate=False)
    copied.from_bytes(nlp.to_bytes())
    copied.meta.update(copy.deepcopy(nlp.meta))
    return copied


def make_student(teacher, *, layers: Union[int, str, Sequence[int], None] = None, student_encoder: Optional[str] = None,
                 reinit_heads: bool = False) -> Tuple[object, dict]:
    """The student pipeline for ``teacher`` (a loaded ``Language``) and what was
    done: ``{"teacher_layers", "layers" (teacher indices kept, or None for a
    named encoder), "encoder"}``.

    layers: K, or teacher layer indices ("0,2,4"); default half the teacher's.
    student_encoder: instead, a named encoder (short name or local directory)
        with the teacher's vocabulary and width, initialised from its own
        pre-trained weights.
    reinit_heads: start every head from fresh random weights instead of the
        teacher's (the heads are always the teacher's: same labels, same config).
    """
    encoders = encoder_components(teacher)
    if len(encoders) != 1:
        raise BertflowError(Errors.E107.format(n=len(encoders), names=encoders))
    student = copy_pipeline(teacher)
    enc = student.get_pipe(encoders[0])
    transformer = enc.model.transformer
    n_teacher = int(getattr(transformer.config, "num_hidden_layers", 0) or len(layer_stack(transformer)[2]))
    info = {"encoder": encoders[0], "teacher_layers": n_teacher, "layers": None, "student_encoder": student_encoder}
    model_cfg = student.config["components"][encoders[0]]["model"]
    if student_encoder is not None:
        if layers is not None:
            raise BertflowError(Errors.E108)
        _swap_encoder(enc, student_encoder)
        model_cfg["name"] = student_encoder
        n_student = int(enc.model.transformer.config.num_hidden_layers)
    else:
        indices = parse_layers(layers, n_teacher)
        keep_layers(transformer, indices)
        info["layers"] = indices
        n_student = len(indices)
        model_cfg["transformer_config"] = {**dict(model_cfg.get("transformer_config") or {}),
                                           "num_hidden_layers": n_student}
    keep = int(model_cfg.get("keep_layers", 1) or 1)
    if keep > n_student:
        raise BertflowError(Errors.E109.format(keep=keep, n=n_student))
    enc.model.attrs["int8_model"] = None
    info["student_layers"] = n_student
    if reinit_heads:
        _reinitialize_heads(student)
    return student, info


def load_hf_encoder(name: str):
    """The pre-trained encoder ``name`` (short name or local directory) as
    spacy-transformers' ``HFObjects`` (``.transformer``, ``.tokenizer``),
    loaded as the encoder component loads it: no remote code, a fast tokenizer."""
    from spacy_transformers.layers.transformer_model import huggingface_from_pretrained

    from bertflow.encoder.names import resolve_encoder

    path = resolve_encoder(name)
    try:
        return huggingface_from_pretrained(path, {"use_fast": True}, {})  # transformers runs no remote code by default
    except Exception as err:  # noqa: BLE001  (any load failure: named with the path)
        raise BertflowError(Errors.E004.format(name=name, path=path, err=err)) from err


def _swap_encoder(enc, name: str) -> None:
    """Put the pre-trained model ``name`` into the encoder component ``enc``:
    it must tokenize exactly as the teacher (same vocabulary, so the teacher's
    and the student's wordpieces line up) and be as wide (the heads are sized
    for the teacher's width)."""
    hf = load_hf_encoder(name)
    if hf.tokenizer.get_vocab() != enc.model.tokenizer.get_vocab():
        raise BertflowError(Errors.E110.format(name=name, n=len(hf.tokenizer.get_vocab()),
                                               m=len(enc.model.tokenizer.get_vocab())))
    width, teacher_width = hf.transformer.config.hidden_size, enc.model.transformer.config.hidden_size
    if width != teacher_width:
        raise BertflowError(Errors.E111.format(name=name, width=width, teacher=teacher_width))
    hf.transformer.to(next(enc.model.transformer.parameters()).device)
    enc.model.attrs["has_transformer"] = False  # spacy-transformers sets a transformer only once
    enc.model.attrs["set_transformer"](enc.model, hf)
    enc.model.attrs["name"] = name


def _reinitialize_heads(nlp) -> None:
    """Fresh random weights for every listening head (shapes and labels kept)."""
    heads = listening_heads(nlp)
    docs = [nlp.make_doc("hello world")]
    for name in heads:
        pipe = nlp.get_pipe(name)
        model_input = getattr(pipe, "model_input", lambda d: d)
        pipe.model.initialize(X=model_input(docs))


def choose_heads(student_nlp, weights: Dict[str, float]) -> Tuple[List[str], Dict[str, str]]:
    """The heads to distill, and those left out with the reason (warned about):
    a weight of 0, or no ``get_distill_loss``."""
    heads = listening_heads(student_nlp)
    unknown = set(weights) - set(heads)
    if unknown:
        raise BertflowError(Errors.E116.format(names=sorted(unknown), heads=sorted(heads)))
    distilled, skipped = [], {}
    for name in heads:
        pipe = student_nlp.get_pipe(name)
        if weights.get(name, 1.0) == 0:
            skipped[name] = "its weight is 0"
        elif not callable(getattr(pipe, "get_distill_loss", None)) or not callable(getattr(pipe, "distill", None)):
            skipped[name] = (f"{type(pipe).__name__} defines no get_distill_loss (see docs/plugins.md, "
                             f"'Distillation'); it keeps the teacher's weights")
        else:
            distilled.append(name)
    for name, why in skipped.items():
        warnings.warn(Errors.W006.format(name=name, why=why))
    if not distilled:
        raise BertflowError(Errors.E117.format(heads=sorted(heads) or "none"))
    return distilled, skipped
