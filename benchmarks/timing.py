"""Wall-clock medians and peak memory of calls measured side by side, on the CPU or a CUDA device."""
import ctypes
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Repetitions:
    """How often calls run: ``warmup`` calls each (at least one), then as many timed rounds (one call of each) as
    fit in ``budget_s`` judged by the last warm-up calls, at least ``minimum`` and at most ``maximum``."""
    warmup: int
    budget_s: float
    minimum: int
    maximum: int

    def timed_calls(self, warmup_s: float) -> int:
        return max(self.minimum, min(self.maximum, int(self.budget_s / max(warmup_s, 1e-9))))


@dataclass(frozen=True)
class Measurement:
    """Median wall-clock seconds of the timed calls, all of them, and the peak memory of the last warm-up call."""
    median_s: float
    times_s: tuple[float, ...]
    peak_mb: float | None

    def as_dict(self, per: int = 1) -> dict:
        """Milliseconds per call divided by ``per`` (e.g. the batch size), the timed calls and the peak memory."""
        return {'ms': 1e3 * self.median_s / per, 'calls_ms': [round(1e3 * t, 2) for t in self.times_s],
                'peak_mb': self.peak_mb}


def measure(call: Callable[[], object], device: torch.device, repetitions: Repetitions) -> Measurement:
    """Run ``call`` after warm-up and return the median time and the peak memory of the last warm-up call."""
    return measure_together({'call': call}, device, repetitions)['call']


def measure_together(calls: dict[str, Callable[[], object]], device: torch.device,
                     repetitions: Repetitions) -> dict[str, Measurement]:
    """Measure calls side by side: each is warmed up, then all are timed in turns, round after round, so that a
    shared machine's changing load falls on all of them alike; the number of rounds fits the budget to the summed
    warm-up time.

    Peak memory is what a call adds on top of what was in use before it, taken on its last warm-up call: on CUDA the
    peak of ``torch.cuda.max_memory_allocated`` (tensor memory); on the CPU the process's peak resident set size
    (``VmHWM``, reset through ``/proc/self/clear_refs`` after ``malloc_trim`` hands freed heap pages back), which
    counts every byte the call touched: tensors, autograd buffers and library workspaces.
    """
    peaks, warmup_s = {}, 0.0
    for name, call in calls.items():
        for _ in range(repetitions.warmup - 1):
            _timed(call, device)
        peaks[name], seconds = _peak_and_time(call, device)
        warmup_s += seconds
    times = {name: [] for name in calls}
    for _ in range(repetitions.timed_calls(warmup_s)):
        for name, call in calls.items():
            times[name].append(_timed(call, device))
    return {name: Measurement(median_s=statistics.median(t), times_s=tuple(t), peak_mb=peaks[name])
            for name, t in times.items()}


def _timed(call: Callable[[], object], device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    call()
    _synchronize(device)
    return time.perf_counter() - start


def _peak_and_time(call: Callable[[], object], device: torch.device) -> tuple[float | None, float]:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        seconds = _timed(call, device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20, seconds
    if not _can_reset_peak_rss():
        return None, _timed(call, device)
    _trim_heap()
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')
    before = _status_kb('VmRSS')
    seconds = _timed(call, device)
    return (_status_kb('VmHWM') - before) / 1024, seconds


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _can_reset_peak_rss() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as clear_refs:
            clear_refs.write('5')
        return _status_kb('VmHWM') > 0
    except OSError:
        return False


def _trim_heap() -> None:
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kb(field: str) -> int:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(f'{field}:'):
                return int(line.split()[1])
    return 0
