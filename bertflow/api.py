"""The public surface a bertflow plugin may rely on.

Everything a task plugin needs is importable from here; anything else in
``bertflow`` is internal and may change between releases. Names listed in
``__all__`` keep their meaning and signature within a major version (new
optional arguments may be added; a changed behaviour gets a new name), and
``tests/test_contract.py`` snapshots them so a removal fails CI.

Groups:

- plugin contract: ``hookimpl``, ``TaskSpec``, ``EncoderSpec``;
- head building blocks: ``HeadPipe``, ``EncoderListener``, ``DocPooler``,
  ``Classifier``, ``encoder_output``, ``doc_pool``, ``listener_width``;
- masked losses: ``annotation_mask``, ``softmax_cross_entropy``,
  ``binary_cross_entropy``, ``mean_squared_error``;
- corpora: ``ConversionReport``, ``text_lines``, ``jsonl_rows``, ``json_problem`` and ``malformed_row`` (converters), ``copy_encoder_inputs`` and the
  ``bertflow.Corpus.v1`` reader (pair inputs in training), ``batch_by_group``
  (``bertflow.batch_by_group.v1``: batches that keep groups together);
- CLI: ``run_or_fail``, ``fail`` (for commands added through ``bertflow_cli``);
- errors: ``BertflowError``;
- discovery and configs: ``get_tasks``, ``resolve_encoder``, ``make_config``;
- testing: ``write_tiny_bert``, ``tiny_encoder_config`` (the pytest fixtures
  ``tiny_bert_dir`` and ``nlp_tiny`` come with the ``bertflow`` pytest plugin).
"""
from .cli._app import fail, run_or_fail
from .config import make_config
from .corpus import (ConversionReport, batch_by_group, copy_encoder_inputs, create_corpus_reader, json_problem,
                     jsonl_rows, malformed_row, text_lines)
from .errors import BertflowError
from .heads import (
    Classifier,
    DocPooler,
    EncoderListener,
    HeadPipe,
    annotation_mask,
    binary_cross_entropy,
    doc_pool,
    encoder_output,
    listener_width,
    mean_squared_error,
    softmax_cross_entropy,
)
from .hookspecs import hookimpl
from .plugins import get_tasks
from .registry import resolve_encoder
from .specs import EncoderSpec, TaskSpec
from .tiny import tiny_encoder_config, write_tiny_bert

__all__ = [
    # plugin contract
    "hookimpl", "TaskSpec", "EncoderSpec",
    # head building blocks
    "HeadPipe", "EncoderListener", "DocPooler", "Classifier", "encoder_output", "doc_pool", "listener_width",
    # losses
    "annotation_mask", "softmax_cross_entropy", "binary_cross_entropy", "mean_squared_error",
    # corpora
    "ConversionReport", "malformed_row", "jsonl_rows", "text_lines", "json_problem", "copy_encoder_inputs", "create_corpus_reader", "batch_by_group",
    # CLI
    "run_or_fail", "fail",
    # errors and discovery
    "BertflowError", "get_tasks", "resolve_encoder", "make_config",
    # testing
    "write_tiny_bert", "tiny_encoder_config",
]
