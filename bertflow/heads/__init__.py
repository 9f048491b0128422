"""Building blocks every head reuses: listening, layer selection, pooling,
classifier and masked losses."""
from bertflow.heads.classifier import Classifier
from bertflow.heads.layers import LAYER_MODES, output_width, select_layers
from bertflow.heads.listener import BertflowListener, EncoderListener, batch_rows, encoder_output, listener_width, same_form, split_rows
from bertflow.heads.losses import (annotation_mask, loss_denominator, binary_cross_entropy, cosine_distance_loss, mean_squared_error,
                     soft_target_loss, softmax_cross_entropy)
from bertflow.heads.pipe import HeadPipe
from bertflow.heads.pooling import POOLINGS, DocPooler, doc_pool

__all__ = [
    "HeadPipe", "BertflowListener", "EncoderListener", "DocPooler", "Classifier", "encoder_output",
    "select_layers", "doc_pool", "listener_width", "output_width", "annotation_mask",
    "softmax_cross_entropy", "loss_denominator", "binary_cross_entropy", "mean_squared_error", "soft_target_loss", "cosine_distance_loss",
    "LAYER_MODES", "POOLINGS", "batch_rows", "same_form", "split_rows",
]
