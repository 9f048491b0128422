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
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from bertflow.compress.losses import HIDDEN, HiddenStateLoss, hidden_pairs, teacher_outputs
from bertflow.compress.student import check_apart, choose_heads, make_student
from bertflow.encoder.pipes import encoder_components, listening_heads
from bertflow.errors import BertflowError, Errors
from bertflow.files.outputs import check_output_dir, write_pipeline


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
    teacher_models = [teacher_nlp.get_pipe(name).model for name in encoder_components(teacher_nlp)]
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


def shuffled_passes(groups: Callable[[], Iterable[list]], batch_size: int, seed: int, *, buffer: int,
                    empty: Callable[[], Exception], on_pass: Optional[Callable[[], None]] = None) -> Iterator[list]:
    """Batches of ``batch_size`` items, pass after pass over what ``groups()``
    yields (lists of items that join the stream together), streamed: each run
    of ``buffer`` items is shuffled, so data of any size costs one buffer of
    memory. A pass with no group raises ``empty()``; ``on_pass`` is called
    after each complete pass."""
    rng = random.Random(seed)
    while True:
        pool: list = []
        seen = 0
        for group in groups():
            seen += 1
            pool.extend(group)
            if len(pool) >= buffer:
                rng.shuffle(pool)
                while len(pool) >= batch_size:
                    yield pool[-batch_size:]
                    del pool[-batch_size:]
        if not seen:
            raise empty()
        rng.shuffle(pool)
        for start in range(0, len(pool), batch_size):
            yield pool[start: start + batch_size]
        if on_pass is not None:
            on_pass()


def shuffled_batches(reader, nlp, batch_size: int, seed: int, buffer: int = 10000,
             augment: Optional[Callable[[object], list]] = None) -> Iterator[list]:
    """Batches of ``batch_size`` examples, pass after pass over the data,
    streamed and shuffled in runs of ``buffer`` (``shuffled_passes``); empty
    docs are left out. ``augment`` maps an example to its variants, which
    join the stream beside it."""
    def groups():
        for eg in reader(nlp):
            if len(eg.predicted):
                yield [eg, *augment(eg)] if augment is not None else [eg]

    return shuffled_passes(groups, batch_size, seed, buffer=buffer,
                           empty=lambda: BertflowError(Errors.E112.format(what="no non-empty documents")))


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
        check_apart(out_path, teacher)
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
    batches = shuffled_batches(reader, student_nlp, batch_size, seed,
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


def _tail_mean(values: List[float], n: int) -> float:
    tail = values[-n:]
    return sum(tail) / len(tail) if tail else 0.0
