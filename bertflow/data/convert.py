"""``bertflow convert TASK IN OUT``: raw data to a ``.spacy`` DocBin, for any task.

One command for every installed task, as ``spacy convert`` is one command
with a table of converters. The table is ``TaskSpec.converters`` (input
format -> converter function) from the ``bertflow_tasks`` hook; a task's own
options are its converter's keyword arguments, given on the command line as
``--name value`` (``--label-map 0=NEGATIVE,1=POSITIVE``, ``--mode cross``,
``--skip-bad``), parsed by the argument's type annotation. A plugin writes a
converter function and lists it; it writes no command.
"""
import inspect
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from bertflow.errors import BertflowError, Errors
from bertflow.files.outputs import check_new_output, is_docbin
from bertflow.hooks.specs import TaskSpec

# arguments every converter takes that are not task options: the two paths, and the format (``--format``)
POSITIONAL = ("input_path", "output_path", "file_format")


def pick_converter(task: TaskSpec, input_path: Path, file_format: Optional[str]) -> Tuple[Callable, Optional[str]]:
    """The converter for ``file_format`` (default: the input's suffix) and the
    format to pass it. A task with one converter function for all its formats
    gets any suffix and decides itself (CoNLL files are often ``.txt``)."""
    if not task.converters:
        raise BertflowError(Errors.E041.format(task_name=task.name))
    fmt = (file_format or Path(input_path).suffix.lstrip(".")).lower()
    if fmt in task.converters:
        return task.converter(fmt), fmt
    if file_format is None and len(set(task.converters.values())) == 1:
        return task.converter(next(iter(task.converters))), None
    raise BertflowError(Errors.E040.format(task_name=task.name, fmt=fmt, input_path=input_path,
                                           task_converters=', '.join(sorted(task.converters))))


def converter_options(func: Callable) -> Dict[str, Tuple[inspect.Parameter, Any]]:
    """The converter's options: name -> (parameter, type without Optional)."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # noqa: BLE001  (unresolvable annotations: treat every option as a string)
        hints = {}
    options = {}
    for name, param in inspect.signature(func).parameters.items():
        if name in POSITIONAL or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        options[name] = (param, _unwrap_optional(hints.get(name, str)))
    return options


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) is Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return hint


def _describe(name: str, hint: Any, param: inspect.Parameter) -> str:
    flag = "--" + name.replace("_", "-")
    if hint is bool:
        return flag
    origin = typing.get_origin(hint)
    kind = ("K=V,K=V" if origin in (dict, Dict) else "A,B" if origin in (list, List, tuple, Sequence)
            else getattr(hint, "__name__", "VALUE").upper())
    default = "" if param.default is inspect.Parameter.empty or param.default is None else f" (default {param.default})"
    return f"{flag} {kind}{default}"


def describe_options(func: Callable) -> str:
    return ", ".join(_describe(name, hint, param) for name, (param, hint) in converter_options(func).items())


def _parse_value(name: str, hint: Any, raw: str) -> Any:
    origin = typing.get_origin(hint)
    try:
        if origin in (dict, Dict):
            pairs = [item for item in raw.split(",") if item]
            bad = [item for item in pairs if "=" not in item]
            if bad:
                raise ValueError(f"{bad[0]!r} is not KEY=VALUE")
            return dict(item.split("=", 1) for item in pairs)
        if origin in (list, List, tuple, Sequence):
            return [item for item in raw.split(",") if item]
        if hint in (int, float):
            return hint(raw)
    except ValueError as err:
        raise BertflowError(Errors.E046.format(name=name.replace('_', '-'), raw=raw, err=err)) from None
    return raw


def parse_options(func: Callable, args: Sequence[str], task: str) -> Dict[str, Any]:
    """``--name value`` / ``--flag`` / ``--no-flag`` words to keyword arguments of ``func``."""
    options = converter_options(func)
    kwargs: Dict[str, Any] = {}
    words = list(args)
    while words:
        word = words.pop(0)
        if not word.startswith("--"):
            raise BertflowError(Errors.E047.format(word=word, task=task, options=describe_options(func)))
        key, _, inline = word[2:].partition("=")
        name = key.replace("-", "_")
        negated = name.startswith("no_") and name[3:] in options and options[name[3:]][1] is bool
        if name not in options and not negated:
            raise BertflowError(Errors.E048.format(word=word.split('=')[0], task=task, options=describe_options(func)))
        if negated:
            kwargs[name[3:]] = False
            continue
        hint = options[name][1]
        if hint is bool:
            kwargs[name] = inline.lower() not in ("false", "0", "no") if inline else True
            continue
        if not inline and not words:
            raise BertflowError(Errors.E049.format(word=word))
        kwargs[name] = _parse_value(name, hint, inline or words.pop(0))
    return kwargs


def installed_task(name: str) -> TaskSpec:
    """The installed task ``name`` (``multiple-choice`` also finds ``multiple_choice``), or an
    error listing the installed ones."""
    from bertflow.hooks.manager import get_tasks

    tasks = get_tasks()
    name = name if name in tasks else name.replace("-", "_")
    if name not in tasks:
        raise BertflowError(Errors.E042.format(task=name, tasks=', '.join(sorted(tasks)) or 'none'))
    return tasks[name]


def convert_args(task: str, input_path: Path, output_path: Path, args: Sequence[str],
                 file_format: Optional[str] = None, force: bool = False):
    """``convert`` with the task's options given as command-line words (``--label-map 0=NEG,1=POS``,
    ``--format F``), parsed against its converter's signature."""
    args = list(args)
    if "--format" in args:
        i = args.index("--format")
        if i + 1 >= len(args):
            raise BertflowError(Errors.E049.format(word="--format"))
        file_format, args = args[i + 1], args[:i] + args[i + 2:]
    spec = installed_task(task)
    func, _ = pick_converter(spec, Path(input_path), file_format)
    return convert(spec.name, input_path, output_path, file_format=file_format, force=force,
                   **parse_options(func, args, spec.name))


def convert(task: str, input_path: Union[str, Path], output_path: Union[str, Path], *,
            file_format: Optional[str] = None, force: bool = False, **options: Any):
    """Convert ``input_path`` for the installed task ``task`` with its plugin's
    converter; ``options`` are that converter's keyword arguments. An existing
    ``output_path`` is replaced only when it is a .spacy file (a previous
    conversion) or with ``force``. Returns the converter's report
    (``ConversionReport`` or a subclass)."""
    spec = installed_task(task)
    task = spec.name
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise BertflowError(Errors.E043.format(input_path=input_path))
    if output_path.exists() and output_path.resolve() == input_path.resolve():
        raise BertflowError(Errors.E044.format(output_path=output_path))
    if output_path.is_dir():
        raise BertflowError(Errors.E130.format(output_path=output_path))
    check_new_output(output_path, force, "OUTPUT", ours=is_docbin)
    func, fmt = pick_converter(spec, input_path, file_format)
    known = converter_options(func)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise BertflowError(Errors.E045.format(unknown=unknown, task=task, options=describe_options(func)))
    if fmt is not None and "file_format" in inspect.signature(func).parameters:
        options["file_format"] = fmt
    return func(input_path, output_path, **options)
