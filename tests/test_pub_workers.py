"""pub's worker processes end with the pub process, however it ends, and leave no lock that stops a rerun."""
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nh_stefaland.tools.pub import files as pub_files

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 120.0  # seconds: a generous bound for starting two workers that import torch on a busy machine


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped by its new parent, does not)."""
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {DEADLINE:.0f} s for {what}")
        time.sleep(0.2)


def _lock_is_free(path: Path) -> bool:
    with path.open('a') as stream:
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason="reads /proc")
def test_workers_end_with_the_pub_process_and_free_their_runs(tmp_path):
    """One pub process per signal, side by side: each ends its two workers, which free the runs they held."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
    outputs = {sig: tmp_path / sig.name for sig in signals}
    parents = {sig: subprocess.Popen([sys.executable, str(ROOT / 'tests' / 'pub_worker_probe.py'), str(output)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for sig, output in outputs.items()}
    markers = [output / f'worker_{k}' for output in outputs.values() for k in range(2)]
    workers = []
    try:
        _wait_for(lambda: all(marker.is_file() and marker.read_text() for marker in markers), "every worker's task")
        workers = [int(marker.read_text()) for marker in markers]
        locks = [pub_files.run_lock(output / 'runs' / 'probe' / f'task_{k}') for output in outputs.values()
                 for k in range(2)]
        assert not any(_lock_is_free(lock) for lock in locks)  # the tasks hold their runs
        for sig, parent in parents.items():
            parent.send_signal(sig)
        for sig, parent in parents.items():
            parent.wait(timeout=DEADLINE)
            if sig != signal.SIGKILL:  # the pub process ended through its handlers
                assert parent.returncode in (-sig, 128 + sig), parent.stdout.read()
        _wait_for(lambda: not any(_alive(pid) for pid in workers), "the workers to end")
        assert all(_lock_is_free(lock) for lock in locks)  # a rerun can take the runs over at once
    finally:
        for pid in [parent.pid for parent in parents.values()] + workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        for parent in parents.values():
            parent.wait()
