"""``bertflow distill``: a smaller student with every head of a teacher
pipeline, trained in one pass over unlabeled text to match all of them.

The student is the teacher's pipeline with a shorter encoder: by default K of
the teacher's own (fine-tuned) transformer layers, spread evenly from the
first to the last as DistilBERT picked them (12 -> 6 keeps 0, 2, 4, 7, 9, 11),
with the embeddings, and a copy of every head. Each training step runs the
teacher once (inference; its heads' model outputs are the targets) and the
student once, and every head that defines ``get_distill_loss`` (the plugin
contract, ``HeadPipe.distill``) adds its loss against its teacher twin; the
one backward pass through the student's encoder carries them all. A head
without a distillation loss keeps its teacher's weights and is reported.

The core knows no task: the losses live in the plugins, on top of
``bertflow.api.soft_target_loss`` and ``cosine_distance_loss``.
"""
import copy
import math
import random
import shutil
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from bertflow.training.config import encoder_names, listening_heads
from bertflow.errors import BertflowError, Errors
from bertflow.files.outputs import replace_entries

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


def _layer_stack(transformer):
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

    owner, attr, stack = _layer_stack(transformer)
    setattr(owner, attr, torch.nn.ModuleList([stack[i] for i in indices]))
    for key in ("num_hidden_layers", "n_layers"):
        if hasattr(transformer.config, key):
            setattr(transformer.config, key, len(indices))


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
    encoders = encoder_names(teacher)
    if len(encoders) != 1:
        raise BertflowError(Errors.E107.format(n=len(encoders), names=encoders))
    student = copy_pipeline(teacher)
    enc = student.get_pipe(encoders[0])
    transformer = enc.model.transformer
    n_teacher = int(getattr(transformer.config, "num_hidden_layers", 0) or len(_layer_stack(transformer)[2]))
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


def _swap_encoder(enc, name: str) -> None:
    """Put the pre-trained model ``name`` into the encoder component ``enc``:
    it must tokenize exactly as the teacher (same vocabulary, so the teacher's
    and the student's wordpieces line up) and be as wide (the heads are sized
    for the teacher's width)."""
    from spacy_transformers.layers.transformer_model import huggingface_from_pretrained

    from bertflow.encoder.names import resolve_encoder

    path = resolve_encoder(name)
    try:
        hf = huggingface_from_pretrained(path, {"use_fast": True}, {})
    except Exception as err:  # noqa: BLE001  (any load failure: named with the path)
        raise BertflowError(Errors.E004.format(name=name, path=path, err=err)) from err
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


@dataclass
class DistillReport:
    """What ``distill`` did."""

    out_dir: Optional[str]
    teacher: str
    encoder: str
    teacher_layers: int
    student_layers: int
    layers: Optional[List[int]]
    student_encoder: Optional[str]
    steps: int
    batch_size: int
    temperature: float
    distilled: List[str]
    skipped: Dict[str, str]
    losses: Dict[str, float] = field(default_factory=dict)  # mean per head over the last tenth of the steps
    first_losses: Dict[str, float] = field(default_factory=dict)  # mean over the first tenth
    docs: int = 0
    seconds: float = 0.0


@contextmanager
def _distilling(teacher_nlp, teacher_precision: Optional[str], student_nlp, encoder, distilled: List[str],
                head_scale: float, hidden: Optional["HiddenStateLoss"] = None) -> Iterator[None]:
    """The settings of a distillation run, put back afterwards (nothing of them
    is saved with the student, and a teacher the caller passed in is left as it
    was):

    - the encoder hands its outputs only to the distilled heads' listeners, so
      it backpropagates when the last of *those* has sent its gradient (a head
      that sits the distillation out does not hold the step back);
    - the student's encoder trains, whole (its ``frozen`` and
      ``trainable_layers`` settings are for fine-tuning a pre-trained encoder);
    - the heads step at ``head_scale`` times the learning rate;
    - the teacher's encoders run in ``teacher_precision``;
    - the hidden-state loss listens to the encoder (first, so the heads' last
      gradient triggers the backward pass); comparing layer to layer, both
      encoders keep the hidden states of all their layers (the heads read
      only their last ``k`` of them, as before).
    """
    saved_map = dict(encoder.listener_map)  # ``listeners`` is derived from it
    saved_enc = {key: encoder.cfg.get(key) for key in ("frozen", "trainable_layers")}
    saved_scales = {name: student_nlp.get_pipe(name).cfg.get("learn_rate_scale", 1.0) for name in distilled}
    teacher_models = [teacher_nlp.get_pipe(name).model for name in encoder_names(teacher_nlp)]
    saved_precision = [model.attrs["precision"] for model in teacher_models]
    deep = hidden is not None and hidden.pairs is not None
    keep_models = [encoder.model, *teacher_models] if deep else []
    saved_keep = [model.attrs["keep_layers"] for model in keep_models]
    for model in keep_models:
        model.attrs["keep_layers"] = int(model.transformer.config.num_hidden_layers) + 1
    encoder.listener_map = {**({HIDDEN: [hidden.listener]} if hidden is not None else {}),
                            **{n: ls for n, ls in saved_map.items() if n in distilled}}
    encoder.cfg.update(frozen=False, trainable_layers=0)
    for name in distilled:
        student_nlp.get_pipe(name).cfg["learn_rate_scale"] = float(head_scale)
    for model in teacher_models if teacher_precision else ():
        model.attrs["precision"], model.attrs["int8_model"] = teacher_precision, None
    try:
        yield
    finally:
        encoder.listener_map = saved_map
        encoder.cfg.update(saved_enc)
        for name, value in saved_scales.items():
            student_nlp.get_pipe(name).cfg["learn_rate_scale"] = value
        for model, keep in zip(keep_models, saved_keep):
            model.attrs["keep_layers"] = keep
        for model, precision in zip(teacher_models, saved_precision):
            if model.attrs["precision"] != precision:
                model.attrs["precision"], model.attrs["int8_model"] = precision, None


def _batches(reader, nlp, batch_size: int, seed: int, buffer: int = 10000,
             augment: Optional[Callable[[object], list]] = None) -> Iterator[list]:
    """Batches of ``batch_size`` examples, pass after pass over the data,
    streamed: each run of ``buffer`` examples is shuffled (a corpus of any size
    costs one buffer of memory); empty docs are left out. ``augment`` maps an
    example to its variants, which join the stream beside it."""
    rng = random.Random(seed)
    while True:
        pool: list = []
        seen = 0
        for eg in reader(nlp):
            if not len(eg.predicted):
                continue
            seen += 1
            pool.append(eg)
            if augment is not None:
                pool.extend(augment(eg))
            if len(pool) >= buffer:
                rng.shuffle(pool)
                while len(pool) >= batch_size:
                    yield pool[-batch_size:]
                    del pool[-batch_size:]
        if not seen:
            raise BertflowError(Errors.E112.format(what="no non-empty documents"))
        rng.shuffle(pool)
        for start in range(0, len(pool), batch_size):
            yield pool[start: start + batch_size]


def distill(
    teacher,
    out_dir: Optional[Union[str, Path]],
    data: Union[str, Path],
    *,
    student_layers: Union[int, str, Sequence[int], None] = None,
    student: Optional[str] = None,
    steps: int = 1000,
    batch_size: int = 32,
    temperature: float = 2.0,
    learn_rate: float = 5e-5,
    head_learn_rate: Optional[float] = None,
    warmup: float = 0.1,
    weights: Optional[Dict[str, float]] = None,
    gold_weight: float = 0.0,
    soft_weight: float = 1.0,
    hidden_weight: float = 0.0,
    hidden_layers: str = "last",
    augment: int = 0,
    augment_prob: float = 0.4,
    teacher_precision: Optional[str] = None,
    reinit_heads: bool = False,
    dropout: float = 0.1,
    gpu_id: int = -1,
    seed: int = 0,
    skip_bad: bool = False,
    force: bool = False,
    progress: bool = True,
) -> Tuple[object, DistillReport]:
    """Distill ``teacher`` (a pipeline directory, package name or loaded
    ``Language``) into a student with the same heads and a smaller encoder,
    trained ``steps`` batches on ``data``; save it to ``out_dir`` (None: keep it
    in memory only). Returns ``(student, report)``.

    data: texts for the teacher to label: ``.txt``/``.jsonl`` (raw text) or a
        ``.spacy`` file (its annotations are ignored unless ``gold_weight`` > 0;
        QA and cross-encoder heads need its question/second-text pairs).
    temperature: softens the teacher's and the student's distributions (T² scales the loss).
    weights: head name -> weight of its distillation loss (default 1; 0 leaves
        a head out).
    gold_weight: mix in each head's own loss on the data's gold annotation.
    soft_weight: weight of the teacher targets (0 with gold_weight 1 trains the
        same student on gold labels alone: the baseline distillation beats).
    hidden_weight: add a cosine loss between the student's and the teacher's
        hidden states, with this weight (0: off).
    hidden_layers: "last" compares the last hidden states (DistilBERT); "all"
        each student layer with the teacher layer it was copied from (PKD,
        TinyBERT: every layer gets its own target, not only the top one).
    augment: also distil on this many variants of each text, in which words
        are swapped for their nearest neighbours in the teacher's input
        embeddings with probability ``augment_prob`` (``bertflow.compress.augment``):
        more text for the teacher to label than the data holds. Teacher
        targets only (the variants have no gold labels).
    head_learn_rate: the heads' learning rate (default ``learn_rate``).
    teacher_precision: run the teacher's encoder in "bf16" or "int8" (faster
        targets on CPU; where it can't apply it warns and runs fp32).
    """
    import spacy
    from thinc.api import fix_random_seed, warmup_linear

    from bertflow.files.loading import load_pipeline
    from bertflow.training.optimizer import make_adamw

    if soft_weight < 0 or gold_weight < 0 or hidden_weight < 0 or soft_weight + gold_weight <= 0:
        raise BertflowError(Errors.E119.format(name="every head"))
    if steps < 1 or batch_size < 1 or temperature <= 0 or not 0 <= warmup < 1:
        raise BertflowError(Errors.E113.format(steps=steps, batch_size=batch_size, temperature=temperature,
                                               warmup=warmup))
    if hidden_layers not in ("last", "all"):
        raise BertflowError(Errors.E126.format(value=hidden_layers))
    if augment < 0:
        raise BertflowError(Errors.E125.format(augment=augment))
    if augment and gold_weight:
        raise BertflowError(Errors.E124.format(augment=augment, gold_weight=gold_weight))
    out_path = Path(out_dir) if out_dir is not None else None
    teacher_name = str(teacher) if not isinstance(teacher, spacy.language.Language) else teacher.meta.get("name", "")
    if out_path is not None:
        check_output_dir(out_path, force)
        if not isinstance(teacher, spacy.language.Language) and Path(teacher).exists():
            here, there = out_path.resolve(), Path(teacher).resolve()
            if here == there or there in here.parents or here in there.parents:
                raise BertflowError(Errors.E115.format(out=out_path, teacher=teacher))
    if not Path(data).exists():
        raise BertflowError(Errors.E056.format(path=data))
    if Path(data).is_file() and Path(data).suffix not in (".spacy", ".txt", ".jsonl"):
        raise BertflowError(Errors.E120.format(path=data))
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    fix_random_seed(seed)
    teacher_nlp = teacher if isinstance(teacher, spacy.language.Language) else load_pipeline(teacher)
    student_nlp, info = make_student(teacher_nlp, layers=student_layers, student_encoder=student,
                                     reinit_heads=reinit_heads)
    weights = dict(weights or {})
    distilled, skipped = choose_heads(student_nlp, weights)
    if teacher_precision:
        from bertflow.encoder.precision import PRECISIONS

        if teacher_precision not in PRECISIONS:
            raise BertflowError(Errors.E006.format(value=teacher_precision, options=", ".join(PRECISIONS)))

    from bertflow.data.corpus import create_corpus_reader
    from bertflow.data.text_corpus import TEXT_SUFFIXES, create_text_corpus_reader

    reader = (create_text_corpus_reader(Path(data), skip_bad=skip_bad) if Path(data).suffix in TEXT_SUFFIXES
              else create_corpus_reader(Path(data)))
    warmup_steps = int(warmup * steps)
    optimizer = make_adamw(warmup_linear(learn_rate, warmup_steps, steps))
    # the heads step at head_learn_rate (default: the encoder's rate; the teacher's own learn_rate_scale was
    # for fresh heads, these start trained)
    scale = (head_learn_rate / learn_rate) if head_learn_rate else 1.0
    encoder = student_nlp.get_pipe(info["encoder"])
    teacher_run = [name for name, _ in teacher_nlp.pipeline if name not in listening_heads(teacher_nlp)]
    history: Dict[str, List[float]] = {name: [] for name in distilled}
    from tqdm import tqdm

    bar = tqdm(total=steps, disable=None if progress else True, unit="step", desc="distill", file=sys.stderr)
    start, n_docs = time.perf_counter(), 0
    replacer = None
    if augment:
        from bertflow.compress.augment import WordReplacer

        replacer = WordReplacer.from_encoder(teacher_nlp.get_pipe(info["encoder"]), prob=augment_prob, seed=seed)
    batches = _batches(reader, student_nlp, batch_size, seed,
                       augment=(lambda eg: replacer(eg, augment)) if replacer is not None else None)
    hidden = HiddenStateLoss(encoder, hidden_pairs(hidden_layers, info["layers"], info["student_layers"],
                                                   info["teacher_layers"])) if hidden_weight else None
    if hidden is not None:
        history[HIDDEN] = []
    with _distilling(teacher_nlp, teacher_precision, student_nlp, encoder, distilled, scale, hidden):
        for step in range(steps):
            batch = next(batches)
            n_docs += len(batch)
            targets, teacher_docs = (teacher_outputs(teacher_nlp, teacher_run, distilled,
                                                     [eg.predicted for eg in batch])
                                     if soft_weight or hidden_weight else (dict.fromkeys(distilled), None))
            losses: Dict[str, float] = {}
            encoder.update(batch, drop=dropout, losses=losses)
            if hidden is not None:
                losses[HIDDEN] = hidden.update([eg.predicted for eg in batch], teacher_docs, hidden_weight)
            for name in distilled:
                student_nlp.get_pipe(name).distill(batch, targets[name], temperature=temperature,
                                                   weight=weights.get(name, 1.0), soft_weight=soft_weight,
                                                   gold_weight=gold_weight, drop=dropout, sgd=None, losses=losses)
            for name, pipe in student_nlp.pipeline:
                if name == info["encoder"] or name in distilled:
                    pipe.finish_update(optimizer)
            optimizer.step_schedules()
            for name in history:
                history[name].append(losses.get(name, 0.0))
            if progress:
                bar.set_postfix({name: f"{_tail_mean(values, 50):.4f}" for name, values in history.items()},
                                refresh=False)
            bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    tenth = max(1, steps // 10)
    student_nlp.meta["bertflow_distilled"] = {
        "teacher": teacher_name, "teacher_layers": info["teacher_layers"], "student_layers": info["student_layers"],
        "layers": info["layers"], "student_encoder": student, "steps": steps, "batch_size": batch_size,
        "temperature": temperature, "soft_weight": soft_weight, "gold_weight": gold_weight,
        "hidden_weight": hidden_weight, "hidden_layers": hidden_layers if hidden_weight else None,
        "augment": augment, "augment_prob": augment_prob if augment else None,
        "learn_rate": learn_rate, "heads": distilled, "skipped": sorted(skipped),
        "data": str(data),
    }
    student_nlp.meta.pop("bertflow_precision", None)  # the teacher's guard figures do not hold for the student
    report = DistillReport(
        out_dir=str(out_path) if out_path is not None else None, teacher=teacher_name, encoder=info["encoder"],
        teacher_layers=info["teacher_layers"], student_layers=info["student_layers"], layers=info["layers"],
        student_encoder=student, steps=steps, batch_size=batch_size, temperature=temperature, distilled=distilled,
        skipped=skipped, losses={n: sum(h[-tenth:]) / len(h[-tenth:]) for n, h in history.items()},
        first_losses={n: sum(h[:tenth]) / len(h[:tenth]) for n, h in history.items()}, docs=n_docs, seconds=seconds)
    if out_path is not None:
        write_pipeline(student_nlp, out_path, force=force)
    return student_nlp, report


def teacher_outputs(teacher_nlp, run: List[str], heads: List[str], docs: list) -> Tuple[Dict[str, object], list]:
    """The teacher heads' model outputs for copies of ``docs`` (inference, the
    docs the student trains on untouched), and the copies: the components in
    ``run`` (the encoders and anything else that is not a head) annotate the
    copies once, then each head's model predicts on them."""
    copies = [doc.copy() for doc in docs]
    with teacher_nlp.select_pipes(enable=run):
        copies = list(teacher_nlp.pipe(copies, batch_size=max(1, len(copies))))
    outputs = {}
    for name in heads:
        pipe = teacher_nlp.get_pipe(name)
        outputs[name] = pipe.model.predict(pipe.model_input(copies))
    return outputs, copies


HIDDEN = "hidden_states"  # the report's name for the hidden-state loss


class HiddenStateLoss:
    """A cosine loss between the student's and the teacher's hidden states, on
    each doc's own wordpieces (the two tokenize alike). It listens to the
    student's encoder like a head, so its gradient joins the heads' in the one
    backward pass.

    pairs: None compares the last hidden states (DistilBERT's loss); else
        (student layer, teacher layer) indices into the encoders'
        ``hidden_states`` (0 is the embeddings' output), each pair weighted
        equally (the layer-to-layer loss of PKD and TinyBERT).
    """

    def __init__(self, encoder, pairs: Optional[List[Tuple[int, int]]] = None):
        from bertflow.heads.listener import BertflowListener

        self.listener = BertflowListener(encoder.name)
        self.pairs = pairs

    def update(self, docs: list, teacher_docs: list, weight: float) -> float:
        from spacy_transformers.data_classes import TransformerData
        from transformers.utils import ModelOutput

        from bertflow.encoder.windows import wordpiece_positions
        from bertflow.heads.losses import cosine_distance_loss

        outputs, backprop = self.listener.begin_update(docs)
        xp = self.listener.ops.xp
        pairs = self.pairs or [(None, None)]

        def layer(data, index):
            output = data.model_output
            return output["last_hidden_state"] if index is None else output["hidden_states"][index]

        picks: list = []
        student: List[list] = [[] for _ in pairs]
        teacher: List[list] = [[] for _ in pairs]
        for doc, t_doc, data in zip(docs, teacher_docs, outputs):
            hidden = data.model_output.get("last_hidden_state") if data is not None else None
            if hidden is None or not hidden.size or doc._.trf_windows is None:
                picks.append(None)
                continue
            where = wordpiece_positions(doc._.trf_windows)
            t_where = wordpiece_positions(t_doc._.trf_windows)
            rows, pos = xp.asarray(where[:, 0]), xp.asarray(where[:, 1])
            t_rows, t_pos = xp.asarray(t_where[:, 0]), xp.asarray(t_where[:, 1])
            picks.append((rows, pos))
            for j, (s_index, t_index) in enumerate(pairs):
                student[j].append(layer(data, s_index)[rows, pos])
                teacher[j].append(xp.asarray(layer(t_doc._.trf_data, t_index)[t_rows, t_pos]))
        if all(pick is None for pick in picks):
            backprop([])
            return 0.0
        share = weight / len(pairs)
        total, d_flats = 0.0, []
        for s_parts, t_parts in zip(student, teacher):
            loss, d_flat = cosine_distance_loss(xp.concatenate(s_parts), xp.concatenate(t_parts))
            total += share * loss
            d_flats.append(d_flat)
        d_datas, start = [], 0
        for pick, data in zip(picks, outputs):
            if pick is None:
                d_datas.append(TransformerData(wordpieces=data.wordpieces, align=data.align,
                                               model_output=ModelOutput()))
                continue
            n = len(pick[0])
            shape = data.model_output["last_hidden_state"].shape
            if self.pairs is None:
                d_hidden = xp.zeros(shape, dtype="f")
                d_hidden[pick[0], pick[1]] = share * d_flats[0][start: start + n]
                d_output = ModelOutput(last_hidden_state=d_hidden)
            else:
                grads = [xp.zeros(shape, dtype="f") for _ in data.model_output["hidden_states"]]
                for (s_index, _), d_flat in zip(self.pairs, d_flats):
                    grads[s_index][pick[0], pick[1]] += share * d_flat[start: start + n]
                d_output = ModelOutput(hidden_states=grads)
            start += n
            d_datas.append(TransformerData(wordpieces=data.wordpieces, align=data.align, model_output=d_output))
        backprop(d_datas)
        return total


def hidden_pairs(hidden_layers: str, layers: Optional[List[int]], n_student: int,
                 n_teacher: int) -> Optional[List[Tuple[int, int]]]:
    """The (student, teacher) ``hidden_states`` indices the hidden-state loss
    compares: None for "last"; for "all", each student layer against the
    output of the teacher layer it was copied from (a named student encoder:
    against layers spread as ``student_layer_indices`` spreads them).
    Index 0 of ``hidden_states`` is the embeddings, so layer i is i + 1.
    ``distill`` has checked ``hidden_layers`` (E126) before loading anything."""
    if hidden_layers == "last":
        return None
    sources = layers if layers is not None else student_layer_indices(n_teacher, n_student)
    return [(k + 1, source + 1) for k, source in enumerate(sources)]


def _tail_mean(values: List[float], n: int) -> float:
    tail = values[-n:]
    return sum(tail) / len(tail) if tail else 0.0


def check_output_dir(out_path: Path, force: bool) -> None:
    """A new pipeline goes to a new or empty directory; ``force`` lets it into
    an existing one, where it replaces only the entries a pipeline writes
    (``write_pipeline``)."""
    if out_path.exists() and not out_path.is_dir():
        raise BertflowError(Errors.E118.format(out=out_path))
    if out_path.exists() and any(out_path.iterdir()) and not force:
        raise BertflowError(Errors.E114.format(out=out_path))


def write_pipeline(nlp, out_path: Path, *, force: bool = False) -> None:
    """Save ``nlp`` to ``out_path`` through a staging directory beside it: an
    interrupted run leaves nothing half-written, and with ``force`` an
    existing directory keeps every file the pipeline does not write (a
    user's notes, results), its pipeline entries replaced once the new ones
    are whole."""
    check_output_dir(out_path, force)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        nlp.to_disk(staging)
        replace_entries(staging, out_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
