"""Loading a saved or packaged pipeline with errors that say what to install."""
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Union

from bertflow.errors import BertflowError, Errors, one_line

_UNKNOWN_FACTORY = re.compile(r"\[E002\] Can't find factory for '([^']+)'")


def plugin_hint(factory: str) -> str:
    """What to install for a factory this environment lacks."""
    from bertflow.hooks.manager import get_tasks

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


def refuse_remote_code_in_config(config, where: str) -> None:
    """Raise if any setting anywhere in a pipeline's config asks transformers to
    run code shipped with a model (``trust_remote_code``, ``auto_map``), under
    whatever component or architecture it sits."""
    from bertflow.encoder.serialization import refuse_remote_code

    def walk(node, trail):
        if isinstance(node, dict):
            refuse_remote_code(node, f"{where} [{'.'.join(trail)}]" if trail else where)
            for key, value in node.items():
                walk(value, trail + [str(key)])
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value, trail)

    walk(config, [])


def _load_directory(path: Path, config: dict):
    """``spacy.load`` of a pipeline directory, in its two steps (spaCy's
    ``load_model_from_path``), with the gate between them: the config is
    checked before anything is built, the built pipeline's shims before any
    weights are read, and the weights are read with every Hugging Face shim
    guarded, whatever factory or architecture the config names."""
    from spacy import util

    from bertflow.encoder.serialization import check_shims, guarded_hf_loading

    for component in sorted(p for p in path.iterdir() if p.is_dir()):
        if (component / "model").is_dir():  # spacy-transformers would load it as a model directory, with its settings
            raise BertflowError(Errors.E019.format(where=component / "model", err="missing, or not a file"))
    overrides = util.dict_to_dot(config, for_overrides=True)
    cfg = util.load_config(path / "config.cfg", overrides=overrides, interpolate=False)
    refuse_remote_code_in_config(cfg, str(path / "config.cfg"))  # as written, before any variable is filled in
    nlp = util.load_model_from_config(cfg.interpolate(), meta=util.get_model_meta(path), vocab=True)
    check_shims(nlp, path)
    check_component_files(nlp, path)
    with guarded_hf_loading(), components_named_in_errors(nlp, path):
        try:
            return nlp.from_disk(path, overrides=overrides)
        except BertflowError:
            raise
        except Exception as err:  # noqa: BLE001  (a damaged file outside the components: vocab, tokenizer)
            raise BertflowError(Errors.E060.format(value=damaged_shared_file(path) or path, first=one_line(err))) from None


@contextmanager
def components_named_in_errors(nlp, path: Path) -> Iterator[None]:
    """While inside, a component whose files fail to load raises an error
    naming its file (the first that does not parse) or its folder, not a
    parser's traceback. spaCy calls each component's ``from_disk`` through the
    instance, so a wrapper set on the instance sees it; it is removed after."""
    wrapped = []
    for name, proc in nlp.components:
        load = getattr(proc, "from_disk", None)
        if load is None:
            continue

        def from_disk(*args, _name=name, _load=load, **kwargs):
            try:
                return _load(*args, **kwargs)
            except BertflowError:
                raise
            except Exception as err:  # noqa: BLE001
                where = damaged_file(nlp, path, [_name]) or path / _name
                raise BertflowError(Errors.E060.format(value=where, first=one_line(err))) from None

        proc.from_disk = from_disk
        wrapped.append(proc)
    try:
        yield
    finally:
        for proc in wrapped:
            del proc.from_disk


def check_component_files(nlp, path: Path) -> None:
    """Every trainable component's saved settings (``cfg``) and weights
    (``model``) must be there: spaCy reads a missing ``cfg`` as empty, and a
    head without its labels would load and then silently predict nothing."""
    for name, pipe in nlp.components:
        if not (hasattr(pipe, "model") and isinstance(getattr(pipe, "cfg", None), dict)):
            continue
        for file in ("cfg", "model"):
            if not (path / name / file).is_file():
                raise BertflowError(Errors.E019.format(where=path / name / file, err="missing, or not a file"))


def damaged_shared_file(path: Path) -> Optional[Path]:
    """The first of the pipeline's own files (tokenizer, vocab) that does not parse; None if all do."""
    import srsly

    readers = (("tokenizer", lambda p: srsly.msgpack_loads(p.read_bytes())),
               ("vocab/strings.json", srsly.read_json), ("vocab/vectors.cfg", srsly.read_json),
               ("vocab/key2row", lambda p: srsly.msgpack_loads(p.read_bytes())))
    for name, read in readers:
        if (path / name).is_file():
            try:
                read(path / name)
            except Exception:  # noqa: BLE001
                return path / name
    return None


def damaged_file(nlp, path: Path, names: Optional[List[str]] = None) -> Optional[Path]:
    """The first file of the components ``names`` (default: all) under ``path``
    that does not parse (``cfg`` as JSON, ``model`` as msgpack), to name it in
    the error; None if all parse."""
    import srsly

    for name in names if names is not None else nlp.component_names:
        for file, read in (("cfg", srsly.read_json), ("model", lambda p: srsly.msgpack_loads(p.read_bytes()))):
            target = path / name / file
            if target.is_file():
                try:
                    read(target)
                except Exception:  # noqa: BLE001
                    return target
    return None


def load_pipeline(name_or_path: Union[str, Path], gpu_id: int = -1, config: Optional[dict] = None):
    """``spacy.load`` on the GPU ``gpu_id`` (-1: CPU), through bertflow's gate:
    a pipeline directory never runs code or writes files while it loads,
    whatever components it names (see docs/RELIABILITY.md, "Security"). A
    pipeline that needs a plugin that is not installed gets an error naming
    the factory and what to install, instead of spaCy's bare unknown-factory
    error."""
    import spacy

    from bertflow.encoder.serialization import guarded_hf_loading

    check_pipeline_files(name_or_path)
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    try:
        path = Path(name_or_path)
        if path.is_dir() and (path / "config.cfg").is_file():
            return _load_directory(path, config or {})
        with guarded_hf_loading():  # an installed package (its code is installed, so trusted) or a bad path
            return spacy.load(name_or_path, config=config or {})
    except BertflowError:
        raise
    except ValueError as err:
        match = _UNKNOWN_FACTORY.search(str(err))
        if not match:
            raise BertflowError(Errors.E132.format(path=name_or_path, first=one_line(err))) from None
        factory = match.group(1)
        raise BertflowError(
            Errors.E058.format(name_or_path=str(name_or_path), factory=factory, hint=plugin_hint(factory))
        ) from None
    except OSError as err:
        raise BertflowError(Errors.E059.format(name_or_path=str(name_or_path), err=str(err).splitlines()[0])) from None
    except Exception as err:  # noqa: BLE001  (a config that does not build: one line, not a traceback)
        raise BertflowError(Errors.E132.format(path=name_or_path, first=one_line(err))) from None
