"""One warning per evaluation when StefaLand returned NaN for days whose inputs are missing.

StefaLand predicts NaN where missing inputs would make it invent flows (:mod:`nh_stefaland.model.missing`); NH's
metrics then leave those days out. So that this never passes unnoticed, the tester of a StefaLand run counts them.
"""
import logging
from typing import Callable

from neuralhydrology.evaluation.tester import BaseTester

LOGGER = logging.getLogger(__name__)


def reporting(tester: BaseTester, describe_policy: Callable[[], str]) -> BaseTester:
    """``tester`` whose ``evaluate`` also logs one warning counting the NaN days and their basins.

    Parameters
    ----------
    tester : BaseTester
        NH's (or the strided) tester of a StefaLand run.
    describe_policy : Callable[[], str]
        Says what the run's mask vectors can stand in for (called only when there are NaN days).
    """
    evaluate = tester.evaluate

    def evaluate_and_report(*args, **kwargs) -> dict:
        results = evaluate(*args, **kwargs)
        counts = nan_days(results, tester.cfg.target_variables)
        if counts:
            LOGGER.warning(f"StefaLand returned NaN on {sum(counts.values())} days of {len(counts)} basins of the "
                           f"{tester.period} period, whose inputs are missing ({describe_policy()}); the metrics "
                           f"leave these days out. Basins: {', '.join(sorted(counts)[:10])}"
                           + (' …' if len(counts) > 10 else '.'))
        return results

    tester.evaluate = evaluate_and_report
    return tester


def nan_days(results: dict, targets: list[str]) -> dict[str, int]:
    """Per basin with any, the number of days whose prediction of any target is NaN (all samples NaN)."""
    counts = {}
    for basin, frequencies in results.items():
        for result in frequencies.values():
            for target in targets:
                simulation = result['xr'][f'{target}_sim'].isel(time_step=-1)
                missing = simulation.isnull()
                if 'samples' in missing.dims:
                    missing = missing.all('samples')
                if int(missing.sum()):
                    counts[basin] = max(counts.get(basin, 0), int(missing.sum()))
    return counts
