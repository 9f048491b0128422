"""The one place that loads plugins: a pluggy PluginManager over the
``bertflow`` entry-point group.

A plugin that fails to import (or whose hooks don't match the specs) is
skipped with a ``PluginLoadWarning`` naming it and the error; the others keep
working, and ``bertflow plugins`` shows the failure.
"""
import functools
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Dict, List, Optional

import pluggy

from bertflow.hooks import contract as hookspecs
from bertflow.errors import BertflowError, Errors, PluginLoadWarning
from bertflow.hooks.specs import EncoderSpec, EndpointSpec, TaskSpec, load_ref

ENTRY_POINT_GROUP = "bertflow"


@dataclass(frozen=True)
class PluginFailure:
    name: str
    value: str
    error: str


def _group_entry_points(group: str):
    eps = entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=group))
    return list(eps.get(group, []))  # Python < 3.10


def create_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """Build a fresh PluginManager with the bertflow hookspecs.

    load_entry_points (bool): also register every plugin of the ``bertflow``
        entry-point group. Tests pass False and register their own.
    """
    pm = pluggy.PluginManager("bertflow")
    pm.add_hookspecs(hookspecs)
    pm.bertflow_failures = []  # type: ignore[attr-defined]
    pm.bertflow_dists = {}  # type: ignore[attr-defined]  plugin name -> (distribution, version)
    if load_entry_points:
        load_plugins(pm)
    return pm


def load_plugins(pm: pluggy.PluginManager, group: str = ENTRY_POINT_GROUP) -> List[PluginFailure]:
    """Register each entry point of ``group``; collect, warn about and return failures."""
    failures: List[PluginFailure] = []
    seen = set()
    for ep in _group_entry_points(group):
        if ep.name in seen or pm.has_plugin(ep.name):
            continue  # the same distribution seen twice on sys.path
        seen.add(ep.name)
        try:
            pm.register(ep.load(), name=ep.name)
            dist = getattr(ep, "dist", None)
            if dist is not None:
                pm.bertflow_dists[ep.name] = (dist.metadata["Name"], dist.version)  # type: ignore[attr-defined]
        except Exception as err:  # import error or hook signature mismatch
            if pm.has_plugin(ep.name):  # a failed register can leave it half-registered
                pm.unregister(name=ep.name)
            failure = PluginFailure(ep.name, ep.value, f"{type(err).__name__}: {err}")
            failures.append(failure)
            warnings.warn(Errors.W001.format(name=ep.name, err=failure.error), PluginLoadWarning)
    getattr(pm, "bertflow_failures", []).extend(failures)
    return failures


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide PluginManager, created on first use (never at import)."""
    return create_plugin_manager()


def _pm(pm: Optional[pluggy.PluginManager]) -> pluggy.PluginManager:
    return pm if pm is not None else get_plugin_manager()


def _merge(pm: pluggy.PluginManager, hook_name: str, kind: str) -> Dict[str, tuple]:
    """Collect the records of one hook as {name: (record, plugin name)}; error on duplicates."""
    hook = getattr(pm.hook, hook_name)
    merged: Dict[str, tuple] = {}
    for impl in hook.get_hookimpls():  # registration order
        records = impl.function() or []
        owner = impl.plugin_name
        for record in records:
            if record.name in merged and merged[record.name][1] != owner:
                raise BertflowError(
                    Errors.E005.format(kind=kind, name=record.name, first=merged[record.name][1], second=owner)
                )
            merged[record.name] = (record, owner)
    return merged


def hook_records(hook_name: str, kind: str, pm: Optional[pluggy.PluginManager] = None) -> Dict[str, tuple]:
    """The records every plugin returns from the hook ``hook_name``, as
    ``{name: (record, plugin name)}`` (an error names two plugins that give the
    same name); ``pm`` defaults to the process's plugin manager."""
    return _merge(_pm(pm), hook_name, kind)


def get_tasks(pm: Optional[pluggy.PluginManager] = None) -> Dict[str, TaskSpec]:
    """All tasks of the installed plugins, by task name."""
    return {name: rec for name, (rec, _) in _merge(_pm(pm), "bertflow_tasks", "task").items()}


def get_encoder_specs(pm: Optional[pluggy.PluginManager] = None) -> Dict[str, EncoderSpec]:
    """Encoder names added by plugins, by name."""
    return {name: rec for name, (rec, _) in _merge(_pm(pm), "bertflow_encoders", "encoder").items()}


def get_functions(pm: Optional[pluggy.PluginManager] = None) -> Dict[str, Callable]:
    """Functions plugins add to the ``bertflow`` namespace (``bertflow_functions``), by
    name; a ``"package.module:function"`` value is imported here, on first use."""
    pm = _pm(pm)
    found: Dict[str, tuple] = {}
    for impl in pm.hook.bertflow_functions.get_hookimpls():
        for name, func in (impl.function() or {}).items():
            if name in found and found[name][1] != impl.plugin_name:
                raise BertflowError(Errors.E005.format(kind="function", name=name, first=found[name][1],
                                                       second=impl.plugin_name))
            found[name] = (func, impl.plugin_name)
    return {name: load_ref(func, f"the function {name!r}") for name, (func, _) in found.items()}


def get_serve_endpoints(nlp, pm: Optional[pluggy.PluginManager] = None) -> Dict[str, EndpointSpec]:
    """The endpoints the installed plugins add to ``bertflow serve`` for ``nlp``, by name."""
    pm = _pm(pm)
    found: Dict[str, tuple] = {}
    for impl in pm.hook.bertflow_serve_endpoints.get_hookimpls():
        for spec in impl.function(nlp) or []:
            if spec.name in found and found[spec.name][1] != impl.plugin_name:
                raise BertflowError(Errors.E005.format(kind="serve endpoint", name=spec.name,
                                                       first=found[spec.name][1], second=impl.plugin_name))
            found[spec.name] = (spec, impl.plugin_name)
    return {name: spec for name, (spec, _) in found.items()}


def describe_plugins(pm: Optional[pluggy.PluginManager] = None) -> dict:
    """A JSON-safe description of the loaded plugins and of the failures."""
    pm = _pm(pm)
    dists = getattr(pm, "bertflow_dists", {})
    plugins = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist_name, dist_version = dists.get(name, (None, None))
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        tasks = []
        if hasattr(plugin, "bertflow_tasks"):
            tasks = [
                {"name": t.name, "factory": t.factory, "scorer": t.scorer,
                 "converters": sorted(t.converters), "metrics": list(t.metrics),
                 "description": t.description}
                for t in plugin.bertflow_tasks() or []
            ]
        encoders = []
        if hasattr(plugin, "bertflow_encoders"):
            encoders = [e.name for e in plugin.bertflow_encoders() or []]
        plugins.append({
            "name": name,
            "distribution": dist_name,
            "version": dist_version,
            "hooks": hooks,
            "tasks": tasks,
            "encoders": encoders,
        })
    failures = [f.__dict__ for f in getattr(pm, "bertflow_failures", [])]
    return {"plugins": plugins, "failures": failures}
