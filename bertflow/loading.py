"""Loading a saved or packaged pipeline with errors that say what to install."""
import re
from pathlib import Path
from typing import Optional, Union

from .errors import BertflowError, Errors

_UNKNOWN_FACTORY = re.compile(r"\[E002\] Can't find factory for '([^']+)'")


def plugin_hint(factory: str) -> str:
    """What to install for a factory this environment lacks."""
    from .plugins import get_tasks

    for task in get_tasks().values():
        if task.factory == factory:  # installed but failed to load: the plugin list says why
            return "the plugin that provides it is installed but failed to load; run 'bertflow plugins'"
    if factory.startswith("bertflow_"):
        return f"install the bertflow plugin that provides it, e.g. pip install bertflow-{factory[len('bertflow_'):]}"
    return "install the package that registers this spaCy factory"


def check_pipeline_files(name_or_path: Union[str, Path]) -> None:
    """For a pipeline directory: its meta.json and config.cfg must parse, so a
    damaged file is one error naming it instead of a parser's traceback."""
    path = Path(name_or_path)
    if not path.is_dir():
        return
    import srsly
    from thinc.api import Config

    for name, read in (("meta.json", srsly.read_json), ("config.cfg", lambda p: Config().from_disk(p, interpolate=False))):
        if not (path / name).exists():
            continue
        try:
            read(path / name)
        except Exception as err:  # noqa: BLE001  (any parser error means the same to the user)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BertflowError(Errors.E060.format(value=path / name, first=first)) from None


def load_pipeline(name_or_path: Union[str, Path], gpu_id: int = -1, config: Optional[dict] = None):
    """``spacy.load`` on the GPU ``gpu_id`` (-1: CPU). A pipeline that needs a
    plugin that is not installed gets an error naming the factory and what to
    install, instead of spaCy's bare unknown-factory error."""
    import spacy

    check_pipeline_files(name_or_path)
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    try:
        return spacy.load(name_or_path, config=config or {})
    except ValueError as err:
        match = _UNKNOWN_FACTORY.search(str(err))
        if not match:
            raise
        factory = match.group(1)
        raise BertflowError(
            Errors.E058.format(name_or_path=str(name_or_path), factory=factory, hint=plugin_hint(factory))
        ) from None
    except OSError as err:
        raise BertflowError(Errors.E059.format(name_or_path=str(name_or_path), err=str(err).splitlines()[0])) from None
