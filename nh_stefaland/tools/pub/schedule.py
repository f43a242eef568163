"""The order in which ``pub`` runs its tasks: each once its pretraining is done, here or on free worker processes."""
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tqdm import tqdm

from nh_stefaland.tools.pub import runs, workers
from nh_stefaland.tools.pub.report import read_status
from nh_stefaland.tools.pub.runs import LOG_FILE, Task


def run_tasks(tasks: list[Task], jobs: int, progress: tqdm, devices: list[str] = ()) -> dict[Path, dict]:
    """Run the tasks in their order, each once its pretraining (``base``) has finished: a finetuning stage does not
    wait for other models' runs; a task whose base failed is marked failed, not run.

    With ``jobs`` 1 the tasks run one after the other in this process, otherwise in ``jobs`` worker processes, a task
    handed to a worker only when one is free; with ``devices`` each worker trains on its own device (one run per
    device at a time).

    Returns
    -------
    dict[Path, dict]
        The status of every task that was run (or could not run), by task directory.
    """
    statuses: dict[Path, dict] = {}

    def finish(task: Task, status: dict) -> None:
        statuses[task.directory] = status
        progress.set_postfix_str(f"{task.label} {task.name}: {status['state']}")
        progress.update(1)

    waiting, running = list(tasks), {}
    with workers.pool(jobs, list(devices)) as executor:
        while waiting or running:
            unfinished = {task.directory for task in (*waiting, *running.values())}
            for task in [task for task in waiting if task.base is None or task.base.directory not in unfinished]:
                if executor is not None and len(running) >= jobs:
                    break
                waiting.remove(task)
                base_status = read_status(task.base.directory) if task.base is not None else None
                if task.base is not None and (base_status is None or base_status['state'] != 'done'):
                    finish(task, _record_blocked(task, base_status))
                elif executor is None:
                    finish(task, runs.run_task(task))
                else:
                    running[_submit(executor, task)] = task
            if running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    finish(task, _result(future, task))
    return statuses


def _submit(executor: ProcessPoolExecutor, task: Task) -> Future:
    """The future of :func:`runs.run_task` of ``task`` in a worker (already failed if the workers are gone)."""
    try:
        return executor.submit(runs.run_task, task)
    except BrokenProcessPool as error:
        future = Future()
        future.set_exception(error)
        return future


def _result(future: Future, task: Task) -> dict:
    """The status a worker returned for ``task``, or a failed one if the worker process died."""
    try:
        return future.result()
    except BrokenProcessPool as error:
        return runs.write_status(task, {'state': 'failed', 'error': f"worker process died: {error}"},
                                 task.directory / LOG_FILE)


def _record_blocked(task: Task, base_status: dict | None) -> dict:
    log = task.base.directory / (base_status['log'] if base_status else LOG_FILE)
    return runs.write_status(task, {'state': 'failed', 'error': f"its pretraining {task.base.name} failed"}, log)
