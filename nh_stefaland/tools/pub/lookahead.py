"""What a scored day sees: how many days of forcing after it a run's prediction of it reads, and why."""
from pathlib import Path

from neuralhydrology.utils.config import Config

from nh_stefaland.nh.strided_tester import strides_evaluation


def future_view(run_config: Path) -> tuple[int, str]:
    """Most days of forcing after a scored day that the run's prediction of that day reads, and the reason.

    NH's testers score the last step of each window, which has no later day: 0 for NH's models (``cudalstm``, …)
    and for StefaLand evaluated with NH's tester (``stefaland_strided_evaluation: False`` or ``predict_last_n: 1``).
    A causal StefaLand (``stefaland_causal``) reads no later day wherever a day sits in its window. A bidirectional
    StefaLand evaluated strided predicts ``predict_last_n`` = P days per window from the whole window: the first of
    them sees P − 1 later days, the last none.

    Parameters
    ----------
    run_config : Path
        The ``config.yml`` that NH wrote into the run folder (a finetuning run's holds its pretraining's keys too).

    Returns
    -------
    tuple[int, str]
        0 or ``predict_last_n`` − 1, and a few words saying why.
    """
    cfg = Config(run_config)
    if cfg.model.lower() != 'stefaland':
        return 0, f"{cfg.model}, scored at each window's last day"
    if cfg.stefaland_causal:
        return 0, "causal"
    if not strides_evaluation(cfg):
        return 0, "bidirectional, scored at each window's last day"
    return cfg.predict_last_n - 1, f"bidirectional, strided: {cfg.predict_last_n} days scored per window"
