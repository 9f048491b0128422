"""bertflow: one pre-trained BERT encoder, many NLP tasks, as spaCy components.

Importing bertflow registers its spaCy factories and architectures; it loads
no plugin, model or network resource (plugins load on first use).
"""
from .about import __version__
from . import encoder  # registers bertflow.Encoder.v1, bertflow.strided_windows.v1
from .encoder import component as _component  # registers the bertflow_encoder factory
from . import heads  # registers the head building blocks
from . import corpus  # registers bertflow.Corpus.v1
from . import optimizer  # registers bertflow.AdamW.v1
from .registry import resolve_encoder
from .plugins import get_plugin_manager, get_tasks
from .hookspecs import hookimpl

__all__ = ["__version__", "resolve_encoder", "get_plugin_manager", "get_tasks", "hookimpl"]


def __getattr__(name: str):
    """``bertflow.<name>`` for functions that plugins add (``bertflow_functions``
    hook), e.g. ``bertflow.search`` from the similarity plugin."""
    if name.startswith("_"):
        raise AttributeError(name)
    from .plugins import get_functions

    functions = get_functions()
    if name in functions:
        return functions[name]
    raise AttributeError(
        f"module 'bertflow' has no attribute {name!r}. Functions added by the installed plugins: "
        f"{', '.join(sorted(functions)) or 'none'}. If {name!r} comes with a plugin, install it "
        f"('bertflow plugins' lists what is installed)."
    )
