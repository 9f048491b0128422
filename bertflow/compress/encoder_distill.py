"""``bertflow distill-encoder``: general distillation of the encoder, once,
on raw text, before any task.

The student is the teacher's own encoder cut to K of its layers (spread as
DistilBERT picked them, first and last kept), then trained on the user's
text to behave like the whole teacher:

- its last hidden states match the teacher's (relative squared error per
  wordpiece: the direction and the size of each vector, so mean-pooled
  sentence vectors stay where the teacher's are); ``hidden_layers="all"``
  also pairs each student layer with the teacher layer it was copied from;
- the self-attention relations of its last layer match the teacher's
  (MiniLMv2: for the queries, keys and values, each split into relation
  heads, the softmax of their scaled dot products with themselves; KL from
  the teacher's to the student's). Relations are square in the sequence
  length, so they need no projection even when the widths differ.

No labels, no task: the student is an encoder directory (Hugging Face
layout, config, weights and tokenizer) that any pipeline takes as
``name = OUT`` and ``bertflow distill --student-encoder OUT`` starts a task
student from. Long texts are cut into windows of ``max_length`` wordpieces,
every window kept.
"""
import copy
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from bertflow.data.text_corpus import TEXT_SUFFIXES
from bertflow.compress.student import check_apart, layer_stack, keep_layers, load_hf_encoder, parse_layers
from bertflow.errors import BertflowError, Errors
from bertflow.files.outputs import check_output_dir, output_lock

REPORT_FILE = "bertflow_encoder_distill.json"  # what was done, beside the weights
# the attention projections each architecture names (BERT/RoBERTa/ELECTRA; DistilBERT)
_PROJECTIONS = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"))


@dataclass
class EncoderDistillReport:
    """What ``distill_encoder`` did."""

    out_dir: Optional[str]
    teacher: str
    teacher_layers: int
    student_layers: int
    layers: List[int]
    steps: int
    batch_size: int
    max_length: int
    learn_rate: float
    hidden_weight: float
    relation_weight: float
    hidden_layers: str
    relation_heads: int
    bf16: bool
    texts: List[str]
    sequences: int = 0  # windows trained on (with repeats once the text runs out)
    wordpieces: int = 0
    passes: int = 0  # complete passes over the text
    first_losses: Dict[str, float] = field(default_factory=dict)
    losses: Dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def teacher_encoder(teacher) -> Tuple[object, object, str]:
    """``(transformer, tokenizer, description)`` of ``teacher``: a pipeline
    (directory or package, its one bertflow encoder, fine-tuned or not) or an
    encoder name (short name or Hugging Face model directory)."""
    import spacy

    from bertflow.encoder.pipes import encoder_components
    from bertflow.files.loading import load_pipeline

    text = str(teacher)
    if (Path(text) / "config.cfg").is_file() or (not Path(text).exists() and spacy.util.is_package(text)):
        nlp = load_pipeline(text)
        encoders = encoder_components(nlp)
        if len(encoders) != 1:
            raise BertflowError(Errors.E107.format(n=len(encoders), names=encoders))
        model = nlp.get_pipe(encoders[0]).model
        return model.transformer, model.tokenizer, f"{text} ({encoders[0]})"
    hf = load_hf_encoder(text)
    return hf.transformer, hf.tokenizer, text


class _Projections:
    """The outputs of one transformer block's query, key and value
    projections in the last forward pass (forward hooks)."""

    def __init__(self, block):
        import torch

        linears = {name.rsplit(".", 1)[-1]: module for name, module in block.named_modules()
                   if isinstance(module, torch.nn.Linear)}
        names = next((group for group in _PROJECTIONS if all(n in linears for n in group)), None)
        if names is None:
            raise BertflowError(Errors.E159.format(cls=type(block).__name__, names=sorted(linears)))
        self.outputs: List[object] = [None, None, None]
        self.handles = [linears[name].register_forward_hook(self._keep(i)) for i, name in enumerate(names)]

    def _keep(self, i: int):
        def hook(module, inputs, output):
            self.outputs[i] = output
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def relation_loss(teacher_x, student_x, mask, heads: int):
    """KL(teacher || student) between the self-relations of two projections
    (``[batch, length, width]``, the widths may differ), each split into
    ``heads`` relation heads: ``softmax(x x^T / sqrt(d))`` over the real
    wordpieces, averaged over heads and real query positions."""
    import torch

    def log_relations(x):
        batch, length, width = x.shape
        d = width // heads
        x = x[..., : d * heads].reshape(batch, length, heads, d).transpose(1, 2)
        x = x.float()
        scores = x @ x.transpose(-1, -2) / math.sqrt(d)
        scores = scores.masked_fill(~mask[:, None, None, :], -1e4)
        return torch.log_softmax(scores, dim=-1)

    t, s = log_relations(teacher_x), log_relations(student_x)
    kl = (t.exp() * (t - s)).sum(-1)  # [batch, heads, length]
    rows = mask[:, None, :].float()
    return (kl * rows).sum() / (rows.sum() * heads)


def hidden_loss(teacher_h, student_h, mask):
    """Relative squared error per real wordpiece: ``|s - t|^2 / |t|^2``."""
    student_h, teacher_h = student_h.float(), teacher_h.float()
    err = ((student_h - teacher_h) ** 2).sum(-1) / (teacher_h ** 2).sum(-1).clamp_min(1e-6)
    weights = mask.float()
    return (err * weights).sum() / weights.sum()


def text_windows(paths: Sequence[Path], tokenizer, max_length: int, *, skip_bad: bool = False,
                 report: Optional[dict] = None) -> Iterator[List[int]]:
    """Wordpiece ids of every window of every text in ``paths`` (``.txt``
    lines, ``.jsonl`` "text" fields, the docs of a ``.spacy`` corpus): a text longer than ``max_length``
    continues in the next window, nothing dropped."""
    chunk: List[str] = []
    for path in paths:
        for text in _texts(path, skip_bad, report):
            chunk.append(text)
            if len(chunk) == 256:
                yield from _encode(tokenizer, chunk, max_length)
                chunk = []
    if chunk:
        yield from _encode(tokenizer, chunk, max_length)


def _texts(path: Path, skip_bad: bool, report: Optional[dict]) -> Iterator[str]:
    """The texts of a ``.spacy`` corpus (its annotations unused) or of
    ``.txt``/``.jsonl`` files (a file, or a folder of them)."""
    from bertflow.data.text_corpus import read_texts

    if path.suffix == ".spacy":
        import spacy

        from bertflow.data.corpus import create_corpus_reader

        for eg in create_corpus_reader(path)(spacy.blank("xx")):
            if eg.reference.text.strip():
                yield eg.reference.text
        return
    yield from read_texts(path, skip_bad=skip_bad, report=report)


def _encode(tokenizer, texts: List[str], max_length: int) -> Iterator[List[int]]:
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_overflowing_tokens=True,
                        add_special_tokens=True)
    for ids in encoded["input_ids"]:
        if len(ids) > 2:  # more than [CLS] [SEP]
            yield ids


def _batches(paths: Sequence[Path], tokenizer, max_length: int, batch_size: int, seed: int, counts: dict,
             skip_bad: bool, buffer: int = 20000) -> Iterator[List[List[int]]]:
    """Shuffled batches of windows, pass after pass; ``counts["passes"]``
    counts the passes completed."""
    from bertflow.compress.distill import shuffled_passes

    def groups():
        for ids in text_windows(paths, tokenizer, max_length, skip_bad=skip_bad, report=counts):
            yield [ids]

    def one_more_pass():
        counts["passes"] = counts.get("passes", 0) + 1

    return shuffled_passes(groups, batch_size, seed, buffer=buffer, on_pass=one_more_pass,
                           empty=lambda: BertflowError(Errors.E160.format(paths=", ".join(map(str, paths)))))


def _pad(batch: List[List[int]], pad_id: int, device):
    import torch

    length = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.bool)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = True
    return input_ids.to(device), mask.to(device)


def check_settings(steps: int, batch_size: int, max_length: int, learn_rate: float, warmup: float,
                   hidden_weight: float, relation_weight: float, hidden_layers: str) -> None:
    """One error naming every bad setting, before anything loads."""
    bad = []
    if steps < 1:
        bad.append(f"steps={steps} (at least 1)")
    if batch_size < 1:
        bad.append(f"batch_size={batch_size} (at least 1)")
    if max_length < 8:
        bad.append(f"max_length={max_length} (at least 8)")
    if learn_rate <= 0:
        bad.append(f"learn_rate={learn_rate} (above 0)")
    if not 0 <= warmup < 1:
        bad.append(f"warmup={warmup} (a fraction in [0, 1))")
    if hidden_weight < 0 or relation_weight < 0 or hidden_weight + relation_weight <= 0:
        bad.append(f"hidden_weight={hidden_weight}, relation_weight={relation_weight} (0 or more, not both 0)")
    if hidden_layers not in ("last", "all"):
        bad.append(f"hidden_layers={hidden_layers!r} ('last' or 'all')")
    if bad:
        raise BertflowError(Errors.E161.format(bad="; ".join(bad)))


def distill_encoder(
    teacher,
    out_dir: Optional[Union[str, Path]],
    texts: Union[str, Path, Sequence[Union[str, Path]]],
    *,
    layers: Union[int, str, Sequence[int], None] = 3,
    steps: int = 2000,
    batch_size: int = 32,
    max_length: int = 128,
    learn_rate: float = 1e-4,
    warmup: float = 0.05,
    hidden_weight: float = 1.0,
    relation_weight: float = 1.0,
    hidden_layers: str = "last",
    relation_heads: Optional[int] = None,
    bf16: Optional[bool] = None,
    gpu_id: int = -1,
    seed: int = 0,
    skip_bad: bool = False,
    force: bool = False,
    progress: bool = True,
) -> Tuple[object, EncoderDistillReport]:
    """Distil ``teacher`` (a pipeline or an encoder name) into an encoder of
    ``layers`` of its own layers, trained ``steps`` batches on ``texts``
    (``.txt``/``.jsonl`` files or folders of them); save it to ``out_dir`` as
    a Hugging Face model directory (None: keep it in memory). Returns
    ``(student transformer, report)``.

    layers: K, or the teacher layer indices ("0,3,5").
    hidden_weight: weight of the hidden-state loss (0: relations only, as MiniLMv2).
    relation_weight: weight of the last layer's attention-relation loss (0: off).
    hidden_layers: "last" or "all" (each student layer against its source layer too).
    relation_heads: relation heads the projections are split into (default:
        the teacher's attention heads).
    bf16: run both forward passes under bf16 autocast (weights and the
        optimizer stay fp32); default: on a GPU, or a CPU with native bf16.
    """
    check_settings(steps, batch_size, max_length, learn_rate, warmup, hidden_weight, relation_weight,
                   hidden_layers)
    paths = [Path(p) for p in ([texts] if isinstance(texts, (str, Path)) else texts)]
    if not paths:
        raise BertflowError(Errors.E160.format(paths="(none given)"))
    for path in paths:
        if not path.exists():
            raise BertflowError(Errors.E056.format(path=path))
        if path.is_file() and path.suffix not in (*TEXT_SUFFIXES, ".spacy"):
            raise BertflowError(Errors.E164.format(path=path))
    settings = dict(layers=layers, steps=steps, batch_size=batch_size, max_length=max_length, learn_rate=learn_rate,
                    warmup=warmup, hidden_weight=hidden_weight, relation_weight=relation_weight,
                    hidden_layers=hidden_layers, relation_heads=relation_heads, bf16=bf16, gpu_id=gpu_id, seed=seed,
                    skip_bad=skip_bad, progress=progress)
    out_path = Path(out_dir) if out_dir is not None else None
    if out_path is None:
        return _distill_encoder(teacher, None, paths, **settings)
    check_apart(out_path, teacher)
    check_output_dir(out_path, force, not_empty=Errors.E162)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out_path, command="bertflow distill-encoder"):  # held from the start: a second run stops now
        return _distill_encoder(teacher, out_path, paths, **settings)


def _distill_encoder(teacher, out_path: Optional[Path], paths: List[Path], *, layers, steps, batch_size, max_length,
                     learn_rate, warmup, hidden_weight, relation_weight, hidden_layers, relation_heads, bf16,
                     gpu_id, seed, skip_bad, progress) -> Tuple[object, EncoderDistillReport]:
    import torch
    from tqdm import tqdm

    device = torch.device(f"cuda:{gpu_id}" if gpu_id >= 0 else "cpu")
    if bf16 is None:
        from bertflow.encoder.precision import cpu_has_native_bf16

        bf16 = gpu_id >= 0 or cpu_has_native_bf16()
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bool(bf16))
    t_model, tokenizer, description = teacher_encoder(teacher)
    n_teacher = len(layer_stack(t_model)[2])
    indices = parse_layers(layers, n_teacher)
    torch.manual_seed(seed)
    teacher_model = copy.deepcopy(t_model).float().to(device).eval()
    student = copy.deepcopy(t_model).float()
    keep_layers(student, indices)
    student.to(device).train()
    heads = int(relation_heads or getattr(t_model.config, "num_attention_heads", 1))
    if heads < 1:
        raise BertflowError(Errors.E161.format(bad=f"relation_heads={heads} (at least 1)"))
    t_proj = _Projections(layer_stack(teacher_model)[2][-1]) if relation_weight else None
    s_proj = _Projections(layer_stack(student)[2][-1]) if relation_weight else None
    pairs = ([(k + 1, i + 1) for k, i in enumerate(indices)] if hidden_layers == "all" else [(-1, -1)])
    optimizer = torch.optim.AdamW(student.parameters(), lr=learn_rate, weight_decay=0.01)
    warm = max(1, int(warmup * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    counts: dict = {}
    batches = _batches(paths, tokenizer, max_length, batch_size, seed, counts, skip_bad)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    report = EncoderDistillReport(
        out_dir=str(out_path) if out_path is not None else None, teacher=description, teacher_layers=n_teacher,
        student_layers=len(indices), layers=indices, steps=steps, batch_size=batch_size, max_length=max_length,
        learn_rate=learn_rate, hidden_weight=hidden_weight, relation_weight=relation_weight,
        hidden_layers=hidden_layers, relation_heads=heads, bf16=bool(bf16), texts=[str(p) for p in paths])
    history: Dict[str, List[float]] = {"hidden": [], "relations": []}
    bar = tqdm(total=steps, disable=None if progress else True, unit="step", desc="distill-encoder", file=sys.stderr)
    start = time.perf_counter()
    try:
        for _ in range(steps):
            batch = next(batches)
            input_ids, mask = _pad(batch, pad_id, device)
            report.sequences += len(batch)
            report.wordpieces += int(mask.sum())
            with torch.no_grad(), autocast:
                t_out = teacher_model(input_ids=input_ids, attention_mask=mask.long(), output_hidden_states=True)
                t_rel = [x.detach() for x in t_proj.outputs] if t_proj is not None else []
            with autocast:
                s_out = student(input_ids=input_ids, attention_mask=mask.long(), output_hidden_states=True)
            loss = torch.zeros((), device=device)
            parts = {}
            if hidden_weight:
                value = sum(hidden_loss(t_out.hidden_states[t], s_out.hidden_states[s], mask)
                            for s, t in pairs) / len(pairs)
                parts["hidden"] = float(value.detach())
                loss = loss + hidden_weight * value
            if relation_weight:
                value = sum(relation_loss(t, s, mask, heads) for t, s in zip(t_rel, s_proj.outputs)) / 3
                parts["relations"] = float(value.detach())
                loss = loss + relation_weight * value
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            for name, value in parts.items():
                history[name].append(value)
            if progress:
                bar.set_postfix({k: f"{sum(v[-50:]) / len(v[-50:]):.4f}" for k, v in history.items() if v},
                                refresh=False)
            bar.update(1)
    finally:
        bar.close()
        for proj in (t_proj, s_proj):
            if proj is not None:
                proj.remove()
    report.seconds = time.perf_counter() - start
    report.passes = counts.get("passes", 0)
    tenth = max(1, steps // 10)
    report.first_losses = {k: sum(v[:tenth]) / len(v[:tenth]) for k, v in history.items() if v}
    report.losses = {k: sum(v[-tenth:]) / len(v[-tenth:]) for k, v in history.items() if v}
    student.eval()
    if out_path is not None:
        save_encoder(student, tokenizer, out_path, asdict(report))
    return student, report


def save_encoder(transformer, tokenizer, out_path: Path, report: dict) -> List[str]:
    """Write an encoder directory (config, safetensors weights, tokenizer and
    the report) through a staging directory beside ``out_path``: nothing
    half-written, and with an existing directory only these entries replaced."""
    from bertflow.files.outputs import replace_entries

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        transformer.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf8")
        return replace_entries(staging, out_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
