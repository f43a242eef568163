"""Where ``pub`` runs its tasks: in this process, or in ``--jobs`` worker processes, each on its own ``--devices``."""
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from multiprocessing import get_context

import nh_stefaland

_device: str | None = None  # this process's device from --devices (None: each config's own `device`)


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


def pool(jobs: int, devices: list[str]) -> ProcessPoolExecutor | nullcontext:
    """``jobs`` worker processes sharing the cores (and taking one device each), or this process when ``jobs`` is 1."""
    if jobs == 1:
        use_device(devices[0] if devices else None)
        return nullcontext()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    context = get_context('spawn')
    queue = context.Queue()
    for index in range(jobs):
        queue.put(devices[index] if devices else None)
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                               initargs=(max(1, cores // jobs), queue))


def use_device(device: str | None) -> None:
    """Make ``device`` the device of every run this process trains (None: each config's own)."""
    global _device
    _device = device


def device_setting() -> dict:
    """The ``device`` config setting of this process's runs (empty: the config's own)."""
    return {} if _device is None else {'device': _device}


def _init_worker(threads: int, devices) -> None:
    import torch

    torch.set_num_threads(threads)
    use_device(devices.get())
    nh_stefaland.register()
