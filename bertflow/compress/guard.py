"""Reduced-precision pipelines with an accuracy guard.

``check_precision`` loads a trained pipeline twice, in fp32 and in the
reduced precision (``int8``: dynamic quantisation of the encoder's Linear
layers, CPU; ``fp16``: autocast, GPU; ``bf16``: autocast, GPU or a CPU with
native bf16), scores every head of both
on the same dev data and measures their speed. ``package_pipeline`` refuses
(with the figures) when any head's main metric drops by more than
``max_drop`` points, and otherwise packages the reduced pipeline with
``spacy package``, the figures recorded under ``meta["bertflow_precision"]``.
An int8 pipeline that fails is checked once more with its FFN up-projections
kept out of int8 (``int8_exclude``) before it is refused.
"""
import io
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Union

from bertflow.encoder.pipes import ENCODER_FACTORY
from bertflow.errors import BertflowError, Errors
from bertflow.training.evaluation import evaluate_nlp, read_examples
from bertflow.files.loading import load_pipeline

REDUCED = ("int8", "fp16", "bf16")
# metrics that are counts or sizes, not qualities to compare
_NOT_QUALITY = ("_n", "n_examples", "speed")


def saved_encoder_components(model: Union[str, Path]) -> List[str]:
    """The bertflow encoders in a saved pipeline's config."""
    from spacy.util import load_config

    config_path = Path(model) / "config.cfg"
    if not config_path.exists():
        raise BertflowError(Errors.E063.format(model=model))
    config = load_config(config_path, interpolate=False)
    names = [n for n in config["nlp"]["pipeline"] if config["components"][n].get("factory") == ENCODER_FACTORY]
    if not names:
        raise BertflowError(Errors.E064.format(model=model))
    return names


def load_with_precision(model: Union[str, Path], precision: str, gpu_id: int = -1,
                        int8_exclude: Optional[List[str]] = None):
    """Load a saved pipeline with every bertflow encoder set to ``precision``
    (and, if given, ``int8_exclude``: the Linear layers kept out of int8)."""
    settings: dict = {"precision": precision}
    if int8_exclude is not None:
        settings["int8_exclude"] = list(int8_exclude)
    overrides = {"components": {name: {"model": dict(settings)} for name in saved_encoder_components(model)}}
    return load_pipeline(model, gpu_id, config=overrides)


def main_metrics(nlp, scores: Dict[str, dict]) -> Dict[str, Dict[str, float]]:
    """Each head's main metrics: those with a weight in ``[training.score_weights]``,
    or every numeric quality metric of a head that has none there."""
    weights = {k for k, v in dict(nlp.config["training"].get("score_weights", {})).items() if v}
    out: Dict[str, Dict[str, float]] = {}
    for head, head_scores in scores.items():
        numeric = {k: float(v) for k, v in head_scores.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.endswith(_NOT_QUALITY)}
        chosen = {k: v for k, v in numeric.items() if k in weights}
        out[head] = chosen or numeric
    return out


def encoder_models(nlp) -> list:
    """The models of the pipeline's bertflow encoders, in pipeline order."""
    from bertflow.encoder.component import EncoderComponent

    return [pipe.model for _, pipe in nlp.pipeline if isinstance(pipe, EncoderComponent)]


def weights_megabytes(nlp, precision: str) -> float:
    """Size of the encoders' weights as the reduced pipeline runs them (int8:
    the quantised modules; fp16/bf16 autocast keeps fp32 weights)."""
    import torch

    from bertflow.encoder.precision import int8_model

    total = 0
    for model in encoder_models(nlp):
        module = int8_model(model) if precision == "int8" else model.transformer
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        total += buffer.tell()
    return total / 2**20


def check_precision(model: Union[str, Path], dev: List[Path], precision: str, *, max_drop: float = 1.0,
                    batch_size: int = 64, gpu_id: int = -1, int8_exclude: Optional[List[str]] = None) -> dict:
    """Score every head in fp32 and in ``precision`` on ``dev``; compare. int8
    runs on the CPU whatever ``gpu_id`` says; fp16 needs a GPU, bf16 a GPU or a
    CPU with native bf16 matmuls.

    RETURNS (dict): ``precision``, ``max_drop``, ``passed``, ``heads`` ({head:
    {metric: {"fp32", "reduced", "drop_points"}}}), ``docs_per_s`` for both,
    ``speedup``, ``weights_mb`` for both, ``dev`` and, for int8,
    ``int8_exclude`` (the Linear layers kept out of int8, as the encoder's
    config says after any override).
    """
    if precision not in REDUCED:
        raise BertflowError(Errors.E065.format(reduced=', '.join(REDUCED), precision=precision))
    if precision == "int8":
        gpu_id = -1  # dynamic quantisation runs on the CPU: both sides are measured there
    from bertflow.encoder.precision import cpu_has_native_bf16, precision_devices

    if gpu_id < 0 and (precision == "fp16" or (precision == "bf16" and not cpu_has_native_bf16())):
        raise BertflowError(Errors.E066.format(precision=precision, devices=precision_devices(precision)))
    if not dev:
        raise BertflowError(Errors.E067)
    results = {}
    for name in ("fp32", precision):
        nlp = load_with_precision(model, name, gpu_id, int8_exclude if name == "int8" else None)
        nlp("Warm-up: the first call quantises (int8) or compiles kernels; it is not timed.")
        evaluation = evaluate_nlp(nlp, read_examples(nlp, dev), batch_size=batch_size)
        if not evaluation["heads"]:
            raise BertflowError(Errors.E068.format(model=model, dev=', '.join(map(str, dev))))
        results[name] = (nlp, evaluation, main_metrics(nlp, evaluation["heads"]), weights_megabytes(nlp, name))
    (_, full, full_metrics, full_mb), (_, reduced, reduced_metrics, reduced_mb) = results["fp32"], results[precision]
    heads = {
        head: {key: {"fp32": value, "reduced": reduced_metrics[head].get(key, 0.0),
                     "drop_points": 100 * (value - reduced_metrics[head].get(key, 0.0))}
               for key, value in metrics.items()}
        for head, metrics in full_metrics.items()
    }
    worst = max((m["drop_points"] for metrics in heads.values() for m in metrics.values()), default=0.0)
    return {
        "precision": precision, "max_drop": max_drop, "passed": worst <= max_drop, "worst_drop_points": worst,
        "heads": heads, "n_examples": full["n_examples"], "dev": [str(p) for p in dev],
        "docs_per_s": {"fp32": full["docs_per_s"], "reduced": reduced["docs_per_s"]},
        "speedup": reduced["docs_per_s"] / full["docs_per_s"],
        "weights_mb": {"fp32": full_mb, "reduced": reduced_mb},
        **({"int8_exclude": _int8_exclusions(results[precision][0])} if precision == "int8" else {}),
    }


def _int8_exclusions(nlp) -> List[str]:
    return sorted({p for model in encoder_models(nlp) for p in model.attrs["int8_exclude"]})


def int8_fallback(model: Union[str, Path]) -> List[str]:
    """What the guard keeps out of int8 when quantising every Linear layer loses
    too much: the encoders' FFN up-projections (``ffn_up_projections``)."""
    from bertflow.encoder.precision import ffn_up_projections

    encoders = encoder_models(load_pipeline(model))
    return sorted({p for encoder in encoders for p in ffn_up_projections(encoder.transformer)})


def format_check(report: dict) -> str:
    """The comparison as a plain-text table."""
    lines = [f"{'head':<14} {'metric':<18} {'fp32':>8} {report['precision']:>8} {'drop (points)':>14}"]
    for head, metrics in report["heads"].items():
        for key, m in metrics.items():
            flag = "  > max" if m["drop_points"] > report["max_drop"] else ""
            lines.append(f"{head:<14} {key:<18} {m['fp32']:8.4f} {m['reduced']:8.4f} {m['drop_points']:14.2f}{flag}")
    if report.get("int8_exclude"):
        lines.append(f"kept out of int8: {', '.join(report['int8_exclude'])} (bf16 where the CPU has native bf16, "
                     f"else fp32)")
    lines.append(f"speed: {report['docs_per_s']['fp32']:.1f} -> {report['docs_per_s']['reduced']:.1f} docs/s "
                 f"(x{report['speedup']:.2f}); encoder weights {report['weights_mb']['fp32']:.1f} -> "
                 f"{report['weights_mb']['reduced']:.1f} MB; {report['n_examples']} dev examples")
    return "\n".join(lines)


def package_pipeline(model: Union[str, Path], output_dir: Union[str, Path], *, precision: str = "fp32",
                     dev: Optional[List[Path]] = None, max_drop: float = 1.0, name: Optional[str] = None,
                     version: Optional[str] = None, build: str = "sdist", batch_size: int = 64, gpu_id: int = -1,
                     force: bool = False, int8_exclude: Optional[List[str]] = None) -> dict:
    """``spacy package`` for a pipeline in ``precision``; a reduced precision is
    first checked against fp32 on ``dev`` and refused when a head drops more
    than ``max_drop`` points. For int8 with no ``int8_exclude`` given, a
    pipeline that fails with every Linear layer in int8 is checked once more
    with its FFN up-projections kept out (``int8_fallback``), and packaged that
    way if that passes; the report keeps the first attempt under
    ``first_attempt``. RETURNS the check report (empty for fp32)."""
    from spacy.cli.package import package

    output_dir = Path(output_dir)
    if not output_dir.exists():
        output_dir.mkdir(parents=True)
    report: dict = {}
    if precision != "fp32":
        def check(exclude):
            return check_precision(model, list(dev or []), precision, max_drop=max_drop, batch_size=batch_size,
                                   gpu_id=gpu_id, int8_exclude=exclude)

        report = check(int8_exclude)
        tried = [report]
        fallback: List[str] = []
        if precision == "int8" and int8_exclude is None and not report["passed"]:
            fallback = sorted(set(report["int8_exclude"]) | set(int8_fallback(model)))
        if fallback and fallback != report["int8_exclude"]:
            first = report
            report = check(fallback)
            report["first_attempt"] = {k: first[k] for k in ("worst_drop_points", "heads", "docs_per_s", "speedup")}
            tried.append(report)
        if not report["passed"]:
            tables = "\n".join(format_check(r) for r in tried)
            raise BertflowError(Errors.E139.format(
                precision=precision, drop=report['worst_drop_points'], max_drop=max_drop, tables=tables,
                int8=", keep more layers out of int8 (--int8-exclude)" if precision == "int8" else ""))
        int8_exclude = report.get("int8_exclude")
    nlp = load_with_precision(model, precision, int8_exclude=int8_exclude) if precision != "fp32" else load_pipeline(model)
    if report:
        nlp.meta["bertflow_precision"] = report
    staging = Path(tempfile.mkdtemp(prefix="bertflow-package-"))
    try:
        nlp.to_disk(staging / "pipeline")
        # spaCy writes the package directory; the sdist/wheel are built here (build_distributions)
        package(staging / "pipeline", output_dir, name=name, version=version, create_sdist=False,
                create_wheel=False, force=force, silent=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    lang, pkg_name, pkg_version = nlp.lang, name or nlp.meta["name"], version or nlp.meta["version"]
    pkg_name = pkg_name if pkg_name.startswith(f"{lang}_") else f"{lang}_{pkg_name}"
    build_distributions(output_dir / f"{pkg_name}-{pkg_version}", [k for k in ("sdist", "wheel") if k in build])
    return report


def build_distributions(package_dir: Path, kinds: List[str]) -> None:
    """``python -m build --sdist/--wheel`` in a package directory written by
    ``spacy package``. Without build isolation when setuptools and wheel are
    installed (no fresh environment, no download: it works offline and takes
    seconds), else isolated as spaCy does it. A failed build is an error with
    the end of its output."""
    import importlib.util
    import subprocess
    import sys

    isolated = any(importlib.util.find_spec(m) is None for m in ("setuptools", "wheel"))
    for kind in kinds:
        cmd = [sys.executable, "-m", "build", ".", f"--{kind}"] + ([] if isolated else ["--no-isolation"])
        result = subprocess.run(cmd, cwd=package_dir, capture_output=True, text=True)
        if result.returncode != 0:
            raise BertflowError(Errors.E074.format(kind=kind, path=package_dir,
                                                   tail=(result.stdout + result.stderr)[-1500:]))
