"""bertflow: one pre-trained BERT encoder, many NLP tasks, as spaCy components.

Importing bertflow registers its spaCy factories and architectures; it loads
no plugin, model or network resource (plugins load on first use).
"""
from .about import __version__
from . import encoder  # registers bertflow.Encoder.v1, bertflow.strided_windows.v1
from .encoder import component as _component  # registers the bertflow_encoder factory
from . import heads  # registers the head building blocks
from . import corpus  # registers bertflow.Corpus.v1
from .registry import resolve_encoder
from .plugins import get_plugin_manager, get_tasks
from .hookspecs import hookimpl

__all__ = ["__version__", "resolve_encoder", "get_plugin_manager", "get_tasks", "hookimpl"]
