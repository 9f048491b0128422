"""Precision in one place.

- ``bertflow.precision.layers``: what the encoder's ``precision`` and
  ``mixed_precision`` switches do to the torch modules (int8 quantisation,
  bf16/fp16 autocast, fused query/key/value).
- ``bertflow.precision.guard``: package a pipeline in reduced precision only
  after every head is checked against fp32 on dev (``bertflow package``).

The guard's functions are importable from here, as before.
"""
import importlib

_GUARD = ("check_precision", "encoder_models", "encoder_names", "format_check", "int8_fallback",
          "load_with_precision", "main_metrics", "package_pipeline", "weights_megabytes", "REDUCED")
__all__ = list(_GUARD)


def __getattr__(name: str):
    if name in _GUARD:
        return getattr(importlib.import_module(".guard", __name__), name)
    raise AttributeError(f"module 'bertflow.precision' has no attribute {name!r}")
