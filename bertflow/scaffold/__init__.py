"""Generate a task plugin distribution from ``bertflow/scaffold/templates/plugin``.

Placeholders in the templates: ``{{task}}`` (task and component suffix,
``intent_detection``), ``{{task_cli}}`` (the task name with hyphens, ``intent-detection``),
``{{package}}`` (``bertflow_intent_detection``), ``{{code}}`` (its error-code
prefix, ``INTENTDETECTION``), ``{{dist}}``
(``bertflow-intent-detection``), ``{{bertflow_version}}``. File and folder
names use ``__task__`` and ``__package__``; ``.tmpl`` is dropped.
"""
import re
from pathlib import Path
from typing import Dict, Union

from bertflow.about import __version__
from bertflow.errors import BertflowError, Errors

TEMPLATE_DIR = Path(__file__).parent / "templates" / "plugin"
NAME_RE = re.compile(r"^[a-z][a-z0-9]*([_-][a-z0-9]+)*$")


def plugin_names(name: str) -> Dict[str, str]:
    if not NAME_RE.match(name or ""):
        raise BertflowError(
            Errors.E069.format(name=name)
        )
    task = name.replace("-", "_")
    return {"task": task, "task_cli": task.replace("_", "-"), "package": f"bertflow_{task}",
            "code": task.replace("_", "").upper(),  # the plugin's error codes: INTENTDETECTION001, ...
            "dist": f"bertflow-{task.replace('_', '-')}", "bertflow_version": __version__}


def _fill(text: str, names: Dict[str, str]) -> str:
    for key, value in names.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def new_plugin(name: str, output_dir: Union[str, Path] = ".", *, force: bool = False) -> Path:
    """Write the plugin distribution; RETURNS its folder."""
    names = plugin_names(name)
    target = Path(output_dir) / names["dist"]
    if target.exists() and not force:
        raise BertflowError(Errors.E070.format(target=target))
    # with force, each template file is written over its namesake; the folder's other files are kept
    for src in sorted(TEMPLATE_DIR.rglob("*.tmpl")):
        rel = str(src.relative_to(TEMPLATE_DIR))[: -len(".tmpl")]
        rel = rel.replace("__package__", names["package"]).replace("__task__", names["task"])
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(_fill(src.read_text(encoding="utf8"), names), encoding="utf8")
    return target
