"""Where ``pub`` runs its tasks: in this process, or in ``--jobs`` worker processes, each on its own ``--devices``.

Workers end with the pub process that started them, however it ends: on SIGINT (Ctrl-C), SIGTERM or SIGHUP it
terminates them before it exits; when it is killed (SIGKILL), the kernel ends them (Linux: ``PR_SET_PDEATHSIG``) or,
elsewhere, each worker's watchdog does within a second. A run a worker left unfinished holds no lock (the kernel drops
it with the process) and has no ``done`` status, so the next pub call on the output directory trains it again.
"""
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from types import FrameType

import nh_stefaland

_device: str | None = None  # this process's device from --devices (None: each config's own `device`)
PR_SET_PDEATHSIG = 1  # Linux prctl option: the signal this process gets when its parent ends
WATCH_SECONDS = 1.0  # how often a worker checks that its parent still runs
GRACE_SECONDS = 10.0  # how long terminated workers may take to end before they are killed


def parse_devices(text: str | None, jobs: int | None) -> tuple[list[str], int]:
    """The devices of ``--devices D1,D2,…`` and the number of workers: one per device unless ``--jobs`` says fewer.

    Raises
    ------
    ValueError
        If a device is not a torch device name, a CUDA device is not available, or ``--jobs`` exceeds the devices.
    """
    if text is None:
        return [], jobs or 1
    import torch

    devices = [name.strip() for name in text.split(',') if name.strip()]
    for name in devices:
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise ValueError(f"--devices {text}: {name!r} is not a device ({error}).") from None
        if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"--devices {text}: {name} is not available (this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)).")
    if not devices:
        raise ValueError("--devices needs at least one device, e.g. --devices cuda:0,cuda:1.")
    if jobs is not None and jobs > len(devices):
        raise ValueError(f"--jobs {jobs} exceeds the {len(devices)} --devices: one run per device at a time.")
    return devices, jobs or len(devices)


@contextmanager
def pool(jobs: int, devices: list[str]) -> Iterator[ProcessPoolExecutor | None]:
    """``jobs`` worker processes sharing the cores (and taking one device each), or None (this process) when ``jobs``
    is 1. Leaving the block normally waits for the workers; leaving it by an exception, SIGINT, SIGTERM or SIGHUP
    included, terminates them first."""
    if jobs == 1:
        use_device(devices[0] if devices else None)
        yield None
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    context = multiprocessing.get_context('spawn')
    queue = context.Queue()
    for index in range(jobs):
        queue.put(devices[index] if devices else None)
    earlier = set(multiprocessing.active_children())
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                                   initargs=(max(1, cores // jobs), queue, os.getpid()))
    try:
        with _signals_raise_system_exit():
            yield executor
    except BaseException:
        _terminate([child for child in multiprocessing.active_children() if child not in earlier])
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown()


def use_device(device: str | None) -> None:
    """Make ``device`` the device of every run this process trains (None: each config's own)."""
    global _device
    _device = device


def device_setting() -> dict:
    """The ``device`` config setting of this process's runs (empty: the config's own)."""
    return {} if _device is None else {'device': _device}


def _init_worker(threads: int, devices, parent: int) -> None:
    _end_with(parent)
    import torch

    torch.set_num_threads(threads)
    use_device(devices.get())
    nh_stefaland.register()


def _end_with(parent: int) -> None:
    """End this worker when the process ``parent`` ends, also when it is killed and cannot end its workers."""
    if sys.platform.startswith('linux'):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the request above
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name='pub-parent-watchdog', daemon=True).start()


def _watch(parent: int) -> None:
    """Exit as soon as this process's parent is no longer ``parent`` (it ended; the worker was adopted)."""
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os._exit(1)


@contextmanager
def _signals_raise_system_exit() -> Iterator[None]:
    """In the main thread, SIGTERM and SIGHUP raise ``SystemExit`` (status 128 + signal) as SIGINT raises
    ``KeyboardInterrupt``, so that the block is left through its exception handlers; the handlers before are put back
    afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = [sig for sig in (signal.SIGTERM, getattr(signal, 'SIGHUP', None)) if sig is not None]
    before = {sig: signal.signal(sig, _raise_system_exit) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _raise_system_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _terminate(children: list[multiprocessing.Process]) -> None:
    """SIGTERM to each worker, SIGKILL to those still running after :data:`GRACE_SECONDS`; then reap them."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join()
