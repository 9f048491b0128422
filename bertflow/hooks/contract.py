"""The bertflow plugin contract: pluggy hook specifications.

A plugin is a module (or object) with functions decorated by ``hookimpl`` and
named like the specs below, published in the ``bertflow`` entry-point group::

    [options.entry_points]
    bertflow =
        mytask = bertflow_mytask.plugin

An implementation may accept fewer arguments than its spec; new arguments are
only ever added to specs, so old plugins keep working.
"""
from typing import Callable, Dict, List

import pluggy

from bertflow.hooks.specs import EncoderSpec, EndpointSpec, EngineSpec, TaskSpec

hookspec = pluggy.HookspecMarker("bertflow")
hookimpl = pluggy.HookimplMarker("bertflow")


@hookspec
def bertflow_tasks() -> List[TaskSpec]:
    """Declare the task heads this plugin provides.

    Called once, lazily, the first time bertflow needs the task list (``bertflow
    plugins``, ``bertflow init config``, converters). Return a list of
    ``TaskSpec`` records. Task names must be unique across installed plugins;
    a duplicate is reported as an error naming both plugins.
    """


@hookspec
def bertflow_encoders() -> List[EncoderSpec]:
    """Declare extra encoder short names.

    Called when an encoder name is resolved (``bertflow.encoder.names.resolve_encoder``).
    Return a list of ``EncoderSpec`` records; their names join the built-in ones
    (``minilm-l6``) and must not clash with them.
    """


@hookspec
def bertflow_cli(app) -> None:
    """Add subcommands to the ``bertflow`` command.

    app (typer.Typer): the root command; call ``app.command()`` or
    ``app.add_typer()`` on it. Called once when the CLI starts. Return nothing.
    """


@hookspec
def bertflow_functions() -> Dict[str, Callable]:
    """Add public functions to the ``bertflow`` namespace.

    Return ``{name: function}`` (or ``{name: "package.module:function"}``, imported
    on first use); ``bertflow.<name>`` then resolves to it (e.g.
    a similarity plugin's ``{"search": search}`` makes ``bertflow.search(...)``
    work). Called on the first access of a name the core does not define.
    Names must be unique across plugins and must not shadow the core's.
    """


@hookspec
def bertflow_engines() -> List[EngineSpec]:
    """Declare engines that run ``bertflow annotate`` (``--engine NAME``).

    Return a list of ``EngineSpec`` records. An engine receives an
    ``AnnotateJob`` (the model, the input, the output and every option) and
    returns an ``AnnotateReport``; ``bertflow.api`` gives it the row reader
    (``read_rows``), the row-to-record loop (``annotate_rows``) and the shard
    protocol the built-in ``ray`` engine uses (``ShardedOutput``). The built-in
    names ``local`` and ``ray`` can't be taken.
    """


@hookspec
def bertflow_serve_endpoints(nlp) -> List[EndpointSpec]:
    """Declare POST endpoints that ``bertflow serve`` adds for this pipeline.

    nlp (Language): the loaded pipeline; return ``[]`` when it lacks the
    component the endpoints need (e.g. no similarity head: no ``/search``).
    Called once when the server loads the pipeline. Names must be unique
    across plugins and can't take the server's own (``annotate``, ``health``,
    ``ready``, ``metrics``, ``docs``, ``openapi.json``).
    """
