"""``bertflow export-encoder PIPELINE OUT_DIR``: a pipeline's encoder as a
standard Hugging Face model directory (config, safetensors weights, tokenizer).

A head that holds weights in Hugging Face's layout (the masked-LM head:
``hf_head_weights() -> (model class, {name: tensor})``) is written with it,
under the model class it names (``BertForMaskedLM``), so
``transformers.AutoModelForMaskedLM`` loads the adapted encoder with its head
and ``AutoModel`` the encoder alone; any bertflow project takes the directory
as ``--vars.encoder``. The directory is written next to OUT_DIR and renamed
into place when complete, so an interrupted export leaves nothing half-written.
"""
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from bertflow.encoder.pipes import encoder_components
from bertflow.errors import BertflowError, Errors
from bertflow.files.loading import load_pipeline
from bertflow.files.outputs import replace_entries


def export_encoder(pipeline: str, out_dir: Path, *, encoder: Optional[str] = None, head: Optional[str] = None,
                   force: bool = False) -> dict:
    """Write the encoder of ``pipeline`` (and a head's Hugging Face weights) to
    ``out_dir``; returns what was written. ``encoder``/``head`` pick components
    by name where the pipeline has several."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not force:
        raise BertflowError(Errors.E103.format(out=out_dir))
    nlp = load_pipeline(pipeline)
    encoders = encoder_components(nlp)
    if encoder is not None and encoder not in encoders:
        raise BertflowError(Errors.E102.format(path=pipeline, why=f"it has no encoder named {encoder!r} "
                                                                  f"(its encoders: {encoders or 'none'})."))
    if not encoders:
        raise BertflowError(Errors.E102.format(path=pipeline, why="it has no bertflow_encoder component."))
    if encoder is None and len(encoders) > 1:
        raise BertflowError(Errors.E102.format(path=pipeline, why=f"it has {len(encoders)} encoders ({encoders}); "
                                                                  "pick one with --encoder NAME."))
    component = nlp.get_pipe(encoder or encoders[0])
    listeners = [name for name in component.listener_map if hasattr(nlp.get_pipe(name), "hf_head_weights")]
    if head is not None and head not in listeners:
        raise BertflowError(Errors.E102.format(path=pipeline, why=f"{head!r} is not a head with Hugging Face "
                                                                  f"weights listening to the encoder ({listeners})."))
    if head is None and len(listeners) > 1:
        raise BertflowError(Errors.E102.format(path=pipeline, why=f"several heads have Hugging Face weights "
                                                                  f"({listeners}); pick one with --head NAME."))
    head = head or (listeners[0] if listeners else None)
    transformer, tokenizer = component.transformer, component.tokenizer
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        written = {"encoder": component.name, "head": head, "out_dir": str(out_dir)}
        if head is None:
            transformer.save_pretrained(str(staging), safe_serialization=True)
            written["architecture"] = type(transformer).__name__
        else:
            written["architecture"] = _save_with_head(transformer, nlp.get_pipe(head), staging)
        tokenizer.save_pretrained(str(staging))
        replace_entries(staging, out_dir)  # --force: replace only the files we write
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    written["files"] = sorted(p.name for p in out_dir.iterdir())
    return written


def _save_with_head(transformer, head, staging: Path) -> str:
    """The base model's weights under its prefix (``bert.``) plus the head's, as
    one safetensors file in ``model_class``'s layout."""
    import copy

    from safetensors.torch import save_file

    model_class, head_weights = head.hf_head_weights()
    prefix = getattr(transformer, "base_model_prefix", "") or ""
    state = {(f"{prefix}.{k}" if prefix else k): v.detach().cpu().contiguous().clone()
             for k, v in transformer.state_dict().items()}
    for name, tensor in head_weights.items():
        state[name] = tensor.detach().cpu().float().contiguous().clone()  # no shared storage: safetensors refuses it
    config = copy.deepcopy(transformer.config)
    config.architectures = [model_class]
    config.save_pretrained(str(staging))
    save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt"})
    return model_class
