"""Training helpers that every task shares (no task-specific code)."""
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import srsly
from spacy.cli._util import import_code, parse_config_overrides
from spacy.cli.train import train as spacy_train
from spacy.util import load_config

from bertflow.errors import BertflowError, Errors, logger

PAPER_LRS = (5e-5, 4e-5, 3e-5, 2e-5)  # the BERT paper's fine-tuning grid


def weighted_score(performance: Dict[str, float], weights: Dict[str, Optional[float]]) -> float:
    """spaCy's final score: the score_weights-weighted sum of the metrics."""
    return sum((w or 0.0) * (performance.get(key) or 0.0) for key, w in weights.items())


def _code_option(args: Sequence[str]) -> "tuple[Optional[str], List[str]]":
    """``--code PATH`` (spacy train's option for a file of registered functions) and the other arguments."""
    args = list(args)
    for i, arg in enumerate(args):
        if arg == "--code" and i + 1 < len(args):
            return args[i + 1], args[:i] + args[i + 2:]
        if arg.startswith("--code="):
            return arg.split("=", 1)[1], args[:i] + args[i + 1:]
    return None, args


def lr_sweep(
    config_path: Path,
    output_dir: Path,
    *,
    lrs: Sequence[float] = PAPER_LRS,
    gpu_id: int = -1,
    overrides: Sequence[str] = (),
    lr_key: str = "training.optimizer.learn_rate.initial_rate",
) -> Dict[str, object]:
    """Train once per learning rate with ``spacy train`` (in this process), keep the best on dev.

    config_path (Path): the training config.
    output_dir (Path): gets ``lr-<lr>/`` per run, ``best/`` (a copy of the best
        model-best), ``sweep.json`` and ``sweep.md``.
    lrs (Sequence[float]): learning rates; default the BERT paper's grid.
    gpu_id (int): as ``spacy train --gpu-id``.
    overrides (Sequence[str]): extra ``--section.key value`` arguments for spacy train, and its
        ``--code PATH``.
    RETURNS (Dict[str, object]): the runs (lr, score, metrics) and the best lr.
    """
    config_path, output_dir = Path(config_path), Path(output_dir)
    if not config_path.exists():
        raise BertflowError(Errors.E072.format(config_path=config_path))
    weights = load_config(config_path, interpolate=False)["training"].get("score_weights", {})
    code, overrides = _code_option(overrides)
    if code is not None:
        import_code(code)
    runs: List[Dict[str, object]] = []
    for lr in lrs:
        run_dir = output_dir / f"lr-{lr:g}"
        args = [*overrides, f"--{lr_key}", repr(float(lr))]
        logger.info("lr sweep, lr=%g: spacy train %s --output %s %s", lr, config_path, run_dir, " ".join(args))
        # in this process, one run after another (each seeds itself from the config, as spacy train does)
        try:
            spacy_train(config_path, run_dir, use_gpu=gpu_id, overrides=parse_config_overrides(args))
        except BertflowError as err:  # a bad config or input: the message, not a traceback
            raise BertflowError(f"spacy train for lr={lr:g}: {err}") from None
        except SystemExit as exit:  # spaCy's own config validation prints its message and exits
            if exit.code not in (0, None):
                raise BertflowError(Errors.E073.format(lr=lr, result_returncode=exit.code)) from None
        meta = srsly.read_json(run_dir / "model-best" / "meta.json")
        perf = {k: v for k, v in meta.get("performance", {}).items() if isinstance(v, (int, float))}
        runs.append({"lr": lr, "score": weighted_score(perf, weights), "performance": perf,
                     "model": str(run_dir / "model-best")})
    best = max(runs, key=lambda r: r["score"])
    if (output_dir / "best").exists():
        shutil.rmtree(output_dir / "best")
    shutil.copytree(best["model"], output_dir / "best")
    summary = {"best_lr": best["lr"], "best_score": best["score"], "runs": runs}
    srsly.write_json(output_dir / "sweep.json", summary)
    lines = ["| lr | dev score | " + " | ".join(sorted(weights)) + " |",
             "|---|---|" + "---|" * len(weights)]
    for run in runs:
        cells = " | ".join(f"{run['performance'].get(k, 0.0):.4f}" for k in sorted(weights))
        mark = " (best)" if run is best else ""
        lines.append(f"| {run['lr']:g}{mark} | {run['score']:.4f} | {cells} |")
    summary["table"] = "\n".join(lines)
    (output_dir / "sweep.md").write_text(summary["table"] + "\n")
    return summary
