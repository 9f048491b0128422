"""What every bertflow command that writes follows: one writer per OUTPUT, and
``--force`` replaces only what bertflow wrote.

- ``output_lock(output)``: a lock file beside OUTPUT (``OUTPUT.bertflow-lock``,
  created atomically, holding the owner's host and pid) for the length of a run.
  A second run on the same OUTPUT is refused in one line; a lock left by a
  process of this host that is gone is taken over, with a one-line warning.
- ``check_new_output(path, force)``: an output that exists is refused unless
  ``force``; the same sentence for every command.
- ``replace_entries(staging, out)``: move what a command wrote into a staging
  folder into ``out``, replacing only the entries of the same name; every
  other file in ``out`` (a user's notes, results) stays.
"""
import json
import os
import shutil
import socket
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional

from bertflow.errors import BertflowError, Errors

LOCK_SUFFIX = ".bertflow-lock"


def lock_path(output: Path) -> Path:
    return output.with_name(output.name + LOCK_SUFFIX)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _read_owner(path: Path) -> dict:
    try:
        owner = json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return owner if isinstance(owner, dict) else {}


@contextmanager
def output_lock(output: Path, command: str = "bertflow annotate") -> Iterator[None]:
    """Hold OUTPUT for this process while the block runs (see the module docstring)."""
    output = Path(output)
    lock = lock_path(output)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "command": command}
    data = json.dumps(me).encode("utf8")
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(lock)
            pid, host = owner.get("pid"), owner.get("host")
            if host == me["host"] and isinstance(pid, int) and not _alive(pid):
                warnings.warn(Errors.W008.format(lock=lock, pid=pid))
                try:
                    lock.unlink()
                except FileNotFoundError:
                    pass
                continue
            if not owner:  # being written this instant, or not ours: say so rather than guess
                raise BertflowError(Errors.E128.format(output=output, owner="an unknown process", lock=lock)) from None
            raise BertflowError(Errors.E128.format(output=output, lock=lock,
                                                   owner=f"{owner.get('command', 'a run')} (pid {pid} on {host})")) from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        break
    else:
        raise BertflowError(Errors.E128.format(output=output, owner="another process", lock=lock))
    try:
        yield
    finally:
        if _read_owner(lock) == me:
            lock.unlink(missing_ok=True)


def check_new_output(path: Path, force: bool, what: str = "OUTPUT",
                     ours: Optional[Callable[[Path], bool]] = None) -> None:
    """Refuse an existing, non-empty ``path`` unless ``force`` (one rule for
    every command), or unless ``ours(path)`` says it is what this command
    writes (a re-run replacing its own output)."""
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    if ours is not None and ours(path):
        return
    if not force:
        how = ("replace what bertflow writes there (other files in it are kept)" if path.is_dir()
               else "replace it")
        raise BertflowError(Errors.E129.format(what=what, path=path, how=how))


def is_docbin(path: Path) -> bool:
    """Whether ``path`` is a .spacy file (a DocBin): what ``bertflow convert`` writes."""
    from spacy.tokens import DocBin

    if not path.is_file():
        return False
    try:
        DocBin().from_bytes(path.read_bytes())
    except Exception:  # noqa: BLE001  (anything that does not parse is not a DocBin)
        return False
    return True


def replace_entries(staging: Path, out: Path) -> List[str]:
    """Move every entry of ``staging`` into ``out`` (created if missing),
    replacing an entry of the same name and keeping every other one; removes
    ``staging``. RETURNS the names moved."""
    staging, out = Path(staging), Path(out)
    if out.exists() and not out.is_dir():
        raise BertflowError(Errors.E135.format(path=out))
    if not out.exists():
        staging.replace(out)
        return sorted(p.name for p in out.iterdir())
    names = sorted(p.name for p in staging.iterdir())
    for name in names:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        (staging / name).replace(target)
    shutil.rmtree(staging, ignore_errors=True)
    return names


def check_output_dir(out_path: Path, force: bool, not_empty: str = Errors.E114) -> None:
    """A new pipeline (or encoder directory: ``not_empty`` is its message)
    goes to a new or empty directory; ``force`` lets it into an existing one,
    where it replaces only the entries it writes (``write_pipeline``)."""
    if out_path.exists() and not out_path.is_dir():
        raise BertflowError(Errors.E118.format(out=out_path))
    if out_path.exists() and any(out_path.iterdir()) and not force:
        raise BertflowError(not_empty.format(out=out_path))


def write_pipeline(nlp, out_path: Path, *, force: bool = False) -> None:
    """Save ``nlp`` to ``out_path`` through a staging directory beside it: an
    interrupted run leaves nothing half-written, and with ``force`` an
    existing directory keeps every file the pipeline does not write (a
    user's notes, results), its pipeline entries replaced once the new ones
    are whole."""
    check_output_dir(out_path, force)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        nlp.to_disk(staging)
        replace_entries(staging, out_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
