"""The shared BERT encoder: architecture, tokenization/windowing and component.

Names are imported on first use, so a module that needs only the Doc
extensions (``bertflow.encoder.extensions``, e.g. a converter) does not load
torch and transformers.
"""
import importlib

_WHERE = {"Encoder": ".model", "EncoderModel": ".model", "EncoderBatch": ".batch", "WindowPlan": ".windows",
          "plan_windows": ".windows", "strided_windows": ".windows", "install_extensions": ".extensions"}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'bertflow.encoder' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
