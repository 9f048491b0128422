"""bertflow: one pre-trained BERT encoder, many NLP tasks, as spaCy components.

Importing bertflow is cheap: it loads no plugin, model, network resource or
deep-learning library. spaCy finds bertflow's factories and registered
functions (``bertflow_encoder``, ``bertflow.Encoder.v1``, ...) through the
entry points in setup.cfg when a config or a saved pipeline names them, and
every bertflow component, corpus reader and converter installs the Doc
extensions it uses (``doc._.text_pair``, ...); ``bertflow.install_extensions()``
installs them by hand.
"""
from typing import Any, Callable

from bertflow.about import __version__
from bertflow.hooks.contract import hookimpl
from bertflow.hooks.manager import get_plugin_manager, get_tasks
from bertflow.encoder.names import resolve_encoder

__all__ = ["__version__", "resolve_encoder", "get_plugin_manager", "get_tasks", "hookimpl", "install_extensions",
           "export_encoder", "distill", "distill_encoder", "compress_pipeline"]


def distill(teacher, out_dir, data, **options):
    """Distill a trained pipeline into a smaller student with all its heads
    (``bertflow distill``): returns ``(student, report)``; ``out_dir`` None
    keeps the student in memory. Options as ``bertflow.compress.distill.distill``
    (``student_layers``, ``student``, ``steps``, ``batch_size``, ``temperature``,
    ``learn_rate``, ``weights``, ``gold_weight``, ...)."""
    from bertflow.compress.distill import distill as run

    return run(teacher, out_dir, data, **options)


def distill_encoder(teacher, out_dir, texts, **options):
    """Distil an encoder (a name, directory or pipeline) into K of its layers
    on raw text (``bertflow distill-encoder``): returns ``(transformer,
    report)``; ``out_dir`` None keeps it in memory. Options as
    ``bertflow.compress.encoder_distill.distill_encoder`` (``layers``,
    ``steps``, ``batch_size``, ``max_length``, ``hidden_weight``,
    ``relation_weight``, ...)."""
    from bertflow.compress.encoder_distill import distill_encoder as run

    return run(teacher, out_dir, texts, **options)


def compress_pipeline(model, out_dir, dev, **options):
    """The fastest pipeline within ``max_loss`` points of ``model`` on ``dev``
    (``bertflow compress``): tries the ladder of int8 and distilled students,
    measures each here and saves the chosen one. Returns the report. Options
    as ``bertflow.compress.ladder.compress`` (named apart from the
    ``bertflow.compress`` package, which importing would shadow it)."""
    from bertflow.compress.ladder import compress as run

    return run(model, out_dir, dev, **options)


def export_encoder(pipeline, out_dir, *, encoder=None, head=None, force: bool = False) -> dict:
    """Write a trained pipeline's encoder (with a head that has Hugging Face
    weights, e.g. the masked-LM head) as a Hugging Face model directory:
    ``bertflow export-encoder`` as a function. Returns what was written."""
    from bertflow.compress.export import export_encoder as export

    return export(str(pipeline), out_dir, encoder=encoder, head=head, force=force)


def install_extensions() -> None:
    """Install the Doc extensions bertflow reads and writes (idempotent)."""
    from bertflow.encoder.extensions import install_extensions as install

    install()


def __getattr__(name: str) -> Callable[..., Any]:
    """``bertflow.<name>`` for functions that plugins add (``bertflow_functions``
    hook), e.g. ``bertflow.ask`` from the QA plugin and ``bertflow.search`` from
    the similarity plugin. Typed, so that type checkers (mypy, pyright) accept
    ``bertflow.ask(...)`` as a call of a function that a plugin provides."""
    if name.startswith("_"):
        raise AttributeError(name)
    from bertflow.hooks.manager import get_functions

    functions = get_functions()
    if name in functions:
        return functions[name]
    raise AttributeError(
        f"module 'bertflow' has no attribute {name!r}. Functions added by the installed plugins: "
        f"{', '.join(sorted(functions)) or 'none'}. If {name!r} comes with a plugin, install it "
        f"('bertflow plugins' lists what is installed)."
    )
