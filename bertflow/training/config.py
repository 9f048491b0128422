"""Training configs for any combination of installed task heads.

``make_config`` writes what ``bertflow init config`` prints: the shared
encoder, one head per task (each task's component with its plugin's
defaults, found through the ``bertflow_tasks`` hook, so third-party heads
work the same way), corpora read with ``bertflow.Corpus.v1`` and the BERT
fine-tuning recipe. ``spacy train`` runs it unchanged.

With ``base``, the new heads are added to a trained pipeline whose encoder
and heads are sourced and *frozen*: the encoder only annotates (its outputs
feed the new heads, no gradient flows back), the old heads are not updated,
so their outputs stay bit-identical.
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import pluggy
import spacy
from spacy.util import load_config
from thinc.api import Config

from bertflow.errors import BertflowError, Errors
from bertflow.hooks.manager import get_tasks
from bertflow.encoder.names import resolve_encoder
from bertflow.encoder.pipes import ENCODER_FACTORY

TRAINING = """
[paths]
train = null
dev = null
encoder = {encoder}

[system]
gpu_allocator = {allocator}
seed = 0

[corpora]

[corpora.train]
@readers = "bertflow.Corpus.v1"
path = ${{paths.train}}
max_length = 0

[corpora.dev]
@readers = "bertflow.Corpus.v1"
path = ${{paths.dev}}
max_length = 0

[training]
seed = ${{system.seed}}
gpu_allocator = ${{system.gpu_allocator}}
dropout = 0.1
accumulate_gradient = 1
patience = 0
max_epochs = 0
max_steps = {max_steps}
eval_frequency = {eval_frequency}
frozen_components = {frozen}
annotating_components = {annotating}

[training.batcher]
@batchers = "spacy.batch_by_sequence.v1"
size = 32
get_length = null

[training.logger]
@loggers = "spacy.ConsoleLogger.v1"
progress_bar = true

[training.optimizer]
@optimizers = "bertflow.AdamW.v1"
beta1 = 0.9
beta2 = 0.999
eps = 0.00000001
weight_decay = 0.01
grad_clip = 1.0
use_averages = false

[training.optimizer.learn_rate]
@schedules = "warmup_linear.v1"
warmup_steps = {warmup_steps}
total_steps = {max_steps}
initial_rate = {lr}
"""

SECTION_ORDER = ["paths", "system", "nlp", "components", "corpora", "training", "pretraining", "initialize"]

COMMENTS = {
    "[paths]": "Give the corpora on the command line: --paths.train train.spacy --paths.dev dev.spacy "
               "(--paths.encoder NAME_OR_DIR switches the encoder)",
    "[corpora.train]": "bertflow.Corpus.v1 is spacy.Corpus.v1 that keeps doc._.text_pair (pair inputs)",
    "[training]": "The BERT fine-tuning recipe: batch 32, dropout 0.1, Adam with weight decay 0.01",
    "[training.optimizer.learn_rate]": "10% linear warm-up, then linear decay to 0 at max_steps",
}


def _fmt_list(names: Sequence[str]) -> str:
    return "[" + ",".join(f'"{n}"' for n in names) + "]"


def make_config(
    tasks: Sequence[str],
    *,
    encoder: str = "minilm-l6",
    gpu: bool = False,
    base: Optional[Union[str, Path]] = None,
    lang: str = "en",
    max_steps: int = 2000,
    lr: float = 5e-5,
    pm: Optional["pluggy.PluginManager"] = None,
) -> str:
    """A commented ``spacy train`` config for the given tasks.

    tasks (Sequence[str]): task names from ``bertflow plugins`` (one component each, named after the task).
    encoder (str): encoder short name or model directory (ignored with ``base``).
    gpu (bool): mixed precision and the PyTorch allocator (falls back to fp32 on CPU).
    base (Optional[Path]): a trained pipeline; its components are sourced and frozen.
    lang (str): spaCy language of a new pipeline (``base`` keeps its own).
    max_steps (int) / lr (float): the step budget and peak learning rate.
    RETURNS (str): the config text.
    """
    tasks = [t.strip() for t in tasks if t.strip()]
    if not tasks:
        raise BertflowError(Errors.E033)
    known = get_tasks(pm)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise BertflowError(
            Errors.E034.format(unknown=', '.join(map(repr, unknown)), known=', '.join(sorted(known)) or 'none')
        )
    if len(set(tasks)) != len(tasks):
        raise BertflowError(Errors.E035.format(tasks=tasks))
    base_components: Dict[str, str] = {}
    if base is not None:
        base = Path(base)
        if not (base / "config.cfg").exists():
            raise BertflowError(Errors.E036.format(base=base))
        base_cfg = load_config(base / "config.cfg", interpolate=False)
        lang = base_cfg["nlp"]["lang"]
        for name in base_cfg["nlp"]["pipeline"]:
            base_components[name] = base_cfg["components"][name].get("factory", "")
        clash = [t for t in tasks if t in base_components]
        if clash:
            raise BertflowError(Errors.E037.format(base=base, clash=clash))
        if ENCODER_FACTORY not in base_components.values():
            raise BertflowError(Errors.E038.format(base=base))
    else:
        resolve_encoder(encoder, pm)  # a clear error now rather than at training time

    nlp = spacy.blank(lang)
    if not base_components:
        nlp.add_pipe(ENCODER_FACTORY, name="encoder",
                     config={"model": {"name": "${paths.encoder}", "max_length": 512, "mixed_precision": bool(gpu)}})
    for task in tasks:
        nlp.add_pipe(known[task].factory, name=task)
    config = Config(nlp.config)
    for task in tasks:  # the task's declared scorer, so evaluation scores what the plugin says it reports
        if known[task].scorer and "scorer" in config["components"][task]:
            config["components"][task]["scorer"] = {"@scorers": known[task].scorer}
    encoders = [n for n, f in base_components.items() if f == ENCODER_FACTORY]
    training = Config().from_str(TRAINING.format(
        allocator='"pytorch"' if gpu else "null", encoder="null" if base_components else f'"{encoder}"',
        max_steps=max_steps, eval_frequency=max(max_steps // 10, 1),
        warmup_steps=max_steps // 10, lr=lr, frozen=_fmt_list(list(base_components)),
        annotating=_fmt_list(encoders)), interpolate=False)
    config = config.merge(training)
    _apply_overrides(config, tasks, known)
    if base_components:
        config["nlp"]["pipeline"] = list(base_components) + tasks
        for name in base_components:
            config["components"][name] = {"source": str(base.resolve())}
    return _commented(_ordered(config.to_str(interpolate=False)), tasks, known, encoder, base)


def _apply_overrides(config: Config, tasks: List[str], known) -> None:
    """Set each task's ``config_overrides``; two tasks disagreeing on a key is an error."""
    owner: Dict[str, str] = {}
    for task in tasks:
        for key, value in known[task].config_overrides.items():
            if key in owner and _get(config, key) != value:
                raise BertflowError(
                    Errors.E039.format(owner=owner[key], task=task, key=key)
                )
            owner[key] = task
            *parents, last = key.split(".")
            section = config
            for part in parents:
                section = section.setdefault(part, {})
            section[last] = value


def _get(config: Config, key: str):
    section = config
    for part in key.split("."):
        section = section[part]
    return section


def _ordered(text: str) -> str:
    """Sections grouped by top-level name in SECTION_ORDER, then by component, parents first."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("[") and current:
            blocks.append(current)
            current = []
        current.append(line)
    if current:
        blocks.append(current)

    names = [block[0].strip("[]").split(".") if block[0].startswith("[") else [""] for block in blocks]
    first_seen = {}
    for i, parts in enumerate(names):
        first_seen.setdefault(tuple(parts[:2]), i)

    def key(item):
        i, _ = item
        top = names[i][0]
        rank = SECTION_ORDER.index(top) if top in SECTION_ORDER else -1
        return rank, first_seen[tuple(names[i][:2])], i

    return "\n".join(line for _, block in sorted(enumerate(blocks), key=key) for line in block)


def _commented(text: str, tasks: List[str], known, encoder: str, base) -> str:
    header = [
        f"bertflow training config: tasks {', '.join(tasks)}, "
        + (f"added to the frozen pipeline {base}" if base is not None else f"encoder {encoder}"),
        "Train: spacy train THIS.cfg --paths.train train.spacy --paths.dev dev.spacy [--gpu-id 0]",
        "Each head learns only from the examples that carry its annotation.",
    ]
    comments = dict(COMMENTS)
    comments["[components.encoder]"] = "The shared BERT encoder: one forward pass per batch feeds every head"
    for task in tasks:
        spec = known[task]
        comments[f"[components.{task}]"] = f"{task}: {spec.description or spec.factory}"
    if base is not None:
        comments["[training]"] += (". The sourced components are frozen (old heads keep bit-identical outputs);"
                                   " the encoder only annotates for the new heads")
    out = ["# " + line for line in header] + [""]
    for line in text.splitlines():
        if line in comments:
            out.append("# " + comments[line])
        out.append(line)
    return "\n".join(out) + "\n"
