"""bertflow-multiple-choice: an out-of-tree bertflow plugin, written only
against ``bertflow.api``. Each (context, candidate) pair goes through the
shared encoder's pair input; a learned vector dotted with [CLS] scores the
candidate; a softmax over a question's candidates picks the answer (the BERT
paper's SWAG setup).

``choose`` and ``install_extensions`` are imported on first use, so loading
the plugin (``bertflow plugins``) imports no deep-learning library."""
import importlib

__all__ = ["choose", "install_extensions"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'bertflow_mc' has no attribute {name!r}")
    return getattr(importlib.import_module(".component", __name__), name)
