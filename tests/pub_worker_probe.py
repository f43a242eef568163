"""Run by tests/test_pub_workers.py: pub's worker pool running two tasks that never end, until a signal ends it.

    python tests/pub_worker_probe.py OUTPUT_DIR

Task k holds the lock of its run directory ``OUTPUT_DIR/runs/probe/task_k`` as ``pub``'s ``run_task`` does, writes
its worker's process id to ``OUTPUT_DIR/worker_k`` and waits forever.
"""
import os
import signal
import sys
import time
from pathlib import Path

from nh_stefaland.tools.pub import files as pub_files, workers


def hold_run(output: Path, k: int) -> None:
    with pub_files.locked(pub_files.run_lock(output / 'runs' / 'probe' / f'task_{k}')):
        (output / f'worker_{k}').write_text(str(os.getpid()))
        while True:
            time.sleep(60)


def main(output: Path) -> None:
    # Ctrl-C as in a terminal: a background job of a shell without job control (a CI script) starts with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with workers.pool(2, []) as executor:
        futures = [executor.submit(hold_run, output, k) for k in range(2)]
        for future in futures:
            future.result()


if __name__ == '__main__':
    main(Path(sys.argv[1]))
