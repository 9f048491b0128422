"""Training helpers that every task shares (no task-specific code)."""
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import srsly
from spacy.util import load_config

from .errors import BertflowError, Errors

PAPER_LRS = (5e-5, 4e-5, 3e-5, 2e-5)  # the BERT paper's fine-tuning grid


def weighted_score(performance: Dict[str, float], weights: Dict[str, Optional[float]]) -> float:
    """spaCy's final score: the score_weights-weighted sum of the metrics."""
    return sum((w or 0.0) * (performance.get(key) or 0.0) for key, w in weights.items())


_USER_ERROR = re.compile(r"^bertflow\.[\w.]*\.(?:\w*Error): (.+)$")


def _run_showing_output(cmd: List[str]) -> "tuple[int, Optional[str]]":
    """Run ``cmd``, passing its output through; RETURNS its exit code and, when it
    failed on a bertflow error (a user mistake), that error's message. A
    traceback ending in a bertflow error is replaced by the message alone."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    held: List[str] = []
    for line in proc.stderr:  # hold a traceback until we know how it ends
        if held or line.startswith("Traceback"):
            held.append(line)
        else:
            sys.stderr.write(line)
    returncode = proc.wait()
    match = next((m for m in map(_USER_ERROR.match, reversed(held)) if m), None) if returncode else None
    if match is None:
        sys.stderr.write("".join(held))
        return returncode, None
    return returncode, match.group(1).strip()


def lr_sweep(
    config_path: Path,
    output_dir: Path,
    *,
    lrs: Sequence[float] = PAPER_LRS,
    gpu_id: int = -1,
    overrides: Sequence[str] = (),
    lr_key: str = "training.optimizer.learn_rate.initial_rate",
) -> Dict[str, object]:
    """Train once per learning rate with ``spacy train``, keep the best on dev.

    config_path (Path): the training config.
    output_dir (Path): gets ``lr-<lr>/`` per run, ``best/`` (a copy of the best
        model-best), ``sweep.json`` and ``sweep.md``.
    lrs (Sequence[float]): learning rates; default the BERT paper's grid.
    gpu_id (int): as ``spacy train --gpu-id``.
    overrides (Sequence[str]): extra ``--section.key value`` arguments for spacy train.
    RETURNS (Dict[str, object]): the runs (lr, score, metrics) and the best lr.
    """
    config_path, output_dir = Path(config_path), Path(output_dir)
    if not config_path.exists():
        raise BertflowError(Errors.E072.format(config_path=config_path))
    weights = load_config(config_path, interpolate=False)["training"].get("score_weights", {})
    runs: List[Dict[str, object]] = []
    for lr in lrs:
        run_dir = output_dir / f"lr-{lr:g}"
        cmd = [sys.executable, "-m", "spacy", "train", str(config_path), "--output", str(run_dir),
               "--gpu-id", str(gpu_id), f"--{lr_key}", repr(float(lr)), *overrides]
        print(f"[lr-sweep] lr={lr:g}: {' '.join(cmd[2:])}", flush=True)
        returncode, user_error = _run_showing_output(cmd)
        if user_error is not None:  # a bad config or input: the message, not spacy train's traceback
            raise BertflowError(f"spacy train for lr={lr:g}: {user_error}")
        if returncode != 0:
            raise BertflowError(Errors.E073.format(lr=lr, result_returncode=returncode))
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
    (output_dir / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary
