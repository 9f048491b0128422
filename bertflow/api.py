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
  ``batch_rows``, ``same_form``, ``split_rows`` (a token-level model's batch
  output as one array of rows, from a ``Ragged`` or a list of per-doc arrays);
- masked losses: ``annotation_mask``, ``softmax_cross_entropy``,
  ``binary_cross_entropy``, ``mean_squared_error``, and ``loss_denominator``
  (what a head's own mean divides by, so data-parallel training stays exact);
- distillation (``bertflow distill``): ``soft_target_loss`` (temperature-softened
  KL against a teacher head's outputs) and ``cosine_distance_loss`` (vectors),
  for a head's ``get_distill_loss``;
- corpora: ``ConversionReport``, ``text_lines``, ``jsonl_rows``, ``json_problem`` and ``malformed_row`` (converters), ``copy_encoder_inputs`` and the
  ``bertflow.Corpus.v1`` reader (pair inputs in training), ``batch_by_group``
  (``bertflow.batch_by_group.v1``: batches that keep groups together),
  ``create_text_corpus_reader`` (``bertflow.TextCorpus.v1``: raw text, no
  DocBin) and ``read_texts``;
- encoder inputs: ``Tokenized`` (a doc's clean wordpieces, what a head's
  ``corrupt_inputs`` replaces), ``wordpiece_words`` (wordpiece -> spaCy token,
  for whole-word masking), ``wordpiece_positions`` (where each wordpiece sits
  in the encoder's output rows); ``OutputStore``, ``DocOutput``,
  ``store_groups`` and ``ragged_range`` (a batch's outputs kept flat, and the
  docs of a head's batch grouped by the store they are views into, so a head
  gathers and reduces for all of them at once); ``set_doc_values`` and
  ``get_doc_value`` (``doc._.<name>`` for a batch of docs, without spaCy's
  per-doc ``doc._`` object);
- annotate engines (``bertflow_engines``): ``EngineSpec``, ``AnnotateJob``,
  ``read_rows`` (any input format), ``annotate_rows`` (rows to records, a
  failing row kept with its error), ``input_files``, ``write_part`` and
  ``ShardedOutput`` (part files written exactly once, resumable);
- CLI: ``run_or_fail``, ``fail`` (for commands added through ``bertflow_cli``);
- errors: ``BertflowError``, ``ErrorsWithCodes`` (a plugin's own message catalogue, each message shown
  with its code: ``class Errors(metaclass=ErrorsWithCodes): NER001 = "..."``);
- discovery and configs: ``get_tasks``, ``resolve_encoder``, ``make_config``, ``listening_heads``
  (each head of a loaded pipeline -> the encoder it listens to);
- safety: ``refuse_remote_code`` (raise if a config or settings would make transformers run a model's
  own code: for a head that saves and loads a transformer config of its own);
- testing: ``write_tiny_bert``, ``tiny_encoder_config``, ``run_project`` (a project's workflow),
  ``run_cli`` (a command line in this process, output captured) (the pytest fixtures
  ``tiny_bert_dir`` and ``nlp_tiny`` come with the ``bertflow`` pytest plugin).
"""
import importlib
from typing import Any

# name -> the module that defines it; imported on first access, so ``from bertflow.api import TaskSpec,
# hookimpl`` (all a plugin's hooks need) loads no deep-learning library
_WHERE = {
    # plugin contract
    "hookimpl": "bertflow.hooks.contract", "TaskSpec": "bertflow.hooks.specs", "EncoderSpec": "bertflow.hooks.specs",
    # head building blocks
    "HeadPipe": "bertflow.heads", "EncoderListener": "bertflow.heads", "DocPooler": "bertflow.heads", "Classifier": "bertflow.heads",
    "encoder_output": "bertflow.heads", "doc_pool": "bertflow.heads", "listener_width": "bertflow.heads",
    # a token-level model's batch output as one array of rows (a Ragged or a list of per-doc arrays)
    "batch_rows": "bertflow.heads", "same_form": "bertflow.heads", "split_rows": "bertflow.heads",
    # losses
    "annotation_mask": "bertflow.heads", "softmax_cross_entropy": "bertflow.heads", "binary_cross_entropy": "bertflow.heads",
    "mean_squared_error": "bertflow.heads", "loss_denominator": "bertflow.heads",
    # distillation losses (a head's get_distill_loss)
    "soft_target_loss": "bertflow.heads", "cosine_distance_loss": "bertflow.heads",
    # corpora
    "ConversionReport": "bertflow.data.corpus", "malformed_row": "bertflow.data.corpus", "jsonl_rows": "bertflow.files.raw", "text_lines": "bertflow.files.raw",
    "json_problem": "bertflow.files.raw", "copy_encoder_inputs": "bertflow.data.corpus", "create_corpus_reader": "bertflow.data.corpus",
    "batch_by_group": "bertflow.data.corpus", "create_text_corpus_reader": "bertflow.data.text_corpus", "read_texts": "bertflow.data.text_corpus",
    # encoder inputs and outputs, for heads that corrupt the input (masked LM) or read wordpiece positions
    "Tokenized": "bertflow.encoder.tokenize", "wordpiece_words": "bertflow.encoder.alignment",
    "wordpiece_positions": "bertflow.encoder.windows",
    # batch-level encoder outputs, for heads that work on a whole batch at once
    "OutputStore": "bertflow.encoder.store", "DocOutput": "bertflow.encoder.store", "store_groups": "bertflow.encoder.store",
    "ragged_range": "bertflow.encoder.store",
    # doc extension values for a whole batch (a head's set_annotations)
    "set_doc_values": "bertflow.encoder.extensions", "get_doc_value": "bertflow.encoder.extensions",
    # annotate engines
    "EngineSpec": "bertflow.hooks.specs", "EndpointSpec": "bertflow.hooks.specs", "AnnotateJob": "bertflow.inference.engines", "ShardedOutput": "bertflow.inference.engines", "annotate_rows": "bertflow.inference.annotate",
    "read_rows": "bertflow.inference.engines", "write_part": "bertflow.inference.engines", "input_files": "bertflow.inference.engines",
    # CLI
    "run_or_fail": "bertflow.cli._app", "fail": "bertflow.cli._app",
    # errors and discovery
    "BertflowError": "bertflow.errors", "listening_heads": "bertflow.encoder.pipes",
    "refuse_remote_code": "bertflow.encoder.serialization", "ErrorsWithCodes": "bertflow.errors", "get_tasks": "bertflow.hooks.manager", "resolve_encoder": "bertflow.encoder.names", "make_config": "bertflow.training.config",
    # testing
    "write_tiny_bert": "bertflow.testing.tiny", "running_server": "bertflow.testing.http", "ServeSettings": "bertflow.serve.app", "create_app": "bertflow.serve.app", "tiny_encoder_config": "bertflow.testing.tiny", "run_project": "bertflow.testing.fixtures", "run_cli": "bertflow.testing.fixtures",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"bertflow.api has no {name!r}: the public API is {', '.join(__all__)}.")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
