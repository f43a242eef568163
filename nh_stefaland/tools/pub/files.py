"""Files that several pub processes share in one output directory: whole-file replaces and advisory locks.

Jobs of an array (``pub … --fold N``, one per machine) write into one output directory. Every shared file is
replaced in one step (a temporary file in the same folder, then ``os.replace``), so a reader sees the old file or
the new one, never part of one; read-merge-write steps (``pub.json``, ``folds.csv``, the report) and each run hold an
exclusive ``fcntl.flock`` lock. The kernel drops a lock when its process ends, so a killed job leaves none behind.
"""
import functools
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows has no flock; the whole-file replaces still hold
    fcntl = None

LOGGER = logging.getLogger(__name__)

LOCK_FILE = 'locks/pub.lock'  # in the output directory: pub.json, folds.csv, basin files and the report


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` in one step; a file that already holds ``text`` is left as it is."""
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    try:
        with temporary.open('x') as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def run_lock(directory: Path) -> Path:
    """The lock file ``DIR/locks/LABEL/NAME.lock`` of the run directory ``DIR/runs/LABEL/NAME``, outside of it (a
    retried run's directory is deleted and made again) and out of ``runs/``."""
    return directory.parents[2] / 'locks' / directory.parent.name / f'{directory.name}.lock'


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (made if missing) while the block runs; wait for other holders.

    Where the file system refuses locks (Lustre mounted without ``flock``, Windows), one warning is logged and the
    block runs unlocked.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open('a') as stream:
        if fcntl is None:
            _warn_unlocked('this platform has no fcntl.flock')
        else:
            try:
                fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
            except OSError as error:
                _warn_unlocked(f"{path.parent} does not support flock ({error})")
        yield  # closing the file releases the lock


@functools.cache
def _warn_unlocked(reason: str) -> None:
    LOGGER.warning(f"Shared files of pub are written without a lock: {reason}. Do not start two pub processes that "
                   f"need the same run (e.g. a shared pretraining) at the same time.")
