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
  ``PretrainedCopy`` (the encoder's transformer as it was before training,
  for a head that falls back on its untrained output when that scores better);
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
- discovery and configs: ``get_tasks``, ``resolve_encoder``, ``make_config``;
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
    "hookimpl": ".hookspecs", "TaskSpec": ".specs", "EncoderSpec": ".specs",
    # head building blocks
    "HeadPipe": ".heads", "EncoderListener": ".heads", "DocPooler": ".heads", "Classifier": ".heads", "PretrainedCopy": ".heads",
    "encoder_output": ".heads", "doc_pool": ".heads", "listener_width": ".heads",
    # a token-level model's batch output as one array of rows (a Ragged or a list of per-doc arrays)
    "batch_rows": ".heads", "same_form": ".heads", "split_rows": ".heads",
    # losses
    "annotation_mask": ".heads", "softmax_cross_entropy": ".heads", "binary_cross_entropy": ".heads",
    "mean_squared_error": ".heads", "loss_denominator": ".distributed",
    # distillation losses (a head's get_distill_loss)
    "soft_target_loss": ".heads", "cosine_distance_loss": ".heads",
    # corpora
    "ConversionReport": ".corpus", "malformed_row": ".corpus", "jsonl_rows": ".rawfiles", "text_lines": ".rawfiles",
    "json_problem": ".rawfiles", "copy_encoder_inputs": ".corpus", "create_corpus_reader": ".corpus",
    "batch_by_group": ".corpus", "create_text_corpus_reader": ".text_corpus", "read_texts": ".text_corpus",
    # encoder inputs and outputs, for heads that corrupt the input (masked LM) or read wordpiece positions
    "Tokenized": ".encoder.wordpieces", "wordpiece_words": ".encoder.wordpieces",
    "wordpiece_positions": ".encoder.windows",
    # batch-level encoder outputs, for heads that work on a whole batch at once
    "OutputStore": ".encoder.store", "DocOutput": ".encoder.store", "store_groups": ".encoder.store",
    "ragged_range": ".encoder.store",
    # doc extension values for a whole batch (a head's set_annotations)
    "set_doc_values": ".encoder.extensions", "get_doc_value": ".encoder.extensions",
    # annotate engines
    "EngineSpec": ".specs", "AnnotateJob": ".engines", "ShardedOutput": ".engines", "annotate_rows": ".annotate",
    "read_rows": ".engines", "write_part": ".engines", "input_files": ".engines",
    # CLI
    "run_or_fail": ".cli._app", "fail": ".cli._app",
    # errors and discovery
    "BertflowError": ".errors", "ErrorsWithCodes": ".errors", "get_tasks": ".plugins", "resolve_encoder": ".encoder_names", "make_config": ".config",
    # testing
    "write_tiny_bert": ".tiny", "tiny_encoder_config": ".tiny", "run_project": ".testing", "run_cli": ".testing",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"bertflow.api has no {name!r}: the public API is {', '.join(__all__)}.")
    value = getattr(importlib.import_module(_WHERE[name], __package__), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
