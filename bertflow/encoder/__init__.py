"""The shared BERT encoder: architecture, tokenization/windowing and component."""
from .batch import EncoderBatch
from .extensions import install_extensions
from .model import Encoder, EncoderModel
from .windows import WindowPlan, plan_windows, strided_windows

__all__ = ["Encoder", "EncoderModel", "EncoderBatch", "WindowPlan", "plan_windows",
           "strided_windows", "install_extensions"]
