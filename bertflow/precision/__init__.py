"""Packaging in reduced precision: ``bertflow.precision.guard`` packages a
pipeline in int8/bf16/fp16 only after every head is checked against fp32 on
dev (``bertflow package``). What the encoder's ``precision`` and
``mixed_precision`` switches do to the torch modules lives with the encoder
(``bertflow.encoder.precision``).

The guard's functions are importable from here.
"""
import importlib

_GUARD = ("check_precision", "encoder_models", "encoder_names", "format_check", "int8_fallback",
          "load_with_precision", "main_metrics", "package_pipeline", "weights_megabytes", "REDUCED")
__all__ = list(_GUARD)


def __getattr__(name: str):
    if name in _GUARD:
        return getattr(importlib.import_module(".guard", __name__), name)
    raise AttributeError(f"module 'bertflow.precision' has no attribute {name!r}")
