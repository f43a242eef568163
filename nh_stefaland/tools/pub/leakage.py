"""Leakage guards for ungauged-basin tests: nothing a model learns may come from a held-out basin's target."""
import re
from collections.abc import Iterable
from pathlib import Path

from neuralhydrology.datautils.utils import load_basin_file
from neuralhydrology.utils.config import Config

# Attributes computed from observed streamflow (CAMELS-US/GB/BR/CL/AUS/DE signatures): exact names, case-insensitive
TARGET_DERIVED_NAMES = frozenset({
    'q_mean', 'q5', 'q95', 'runoff_ratio', 'baseflow_index', 'baseflow_index_ceh', 'stream_elas', 'streamflow_elas',
    'slope_fdc', 'hfd_mean', 'high_q_freq', 'high_q_dur', 'low_q_freq', 'low_q_dur', 'zero_q_freq',
})
# ... and name patterns of the same families (flow quantiles, flow-duration curves, flow frequencies)
TARGET_DERIVED_PATTERNS = (
    re.compile(r'^q_?\d+'),                       # flow quantiles: q5, q95, q_5
    re.compile(r'^q_'),                           # q_mean, q_std, ...
    re.compile(r'(^|_)(high|low|zero)_q(_|$)'),   # high/low/zero-flow frequencies and durations
    re.compile(r'runoff_ratio|baseflow|streamflow|discharge_obs'),
    re.compile(r'(^|_)fdc(_|$)'),                 # flow-duration-curve slope
    re.compile(r'(^|_)stream_elas'),
)


def target_derived(names: Iterable[str], allowed: Iterable[str] = ()) -> list[str]:
    """The names that look computed from observed streamflow (:data:`TARGET_DERIVED_NAMES`/``_PATTERNS``)."""
    allowed = {name.lower() for name in allowed}
    return [name for name in names if name.lower() not in allowed and
            (name.lower() in TARGET_DERIVED_NAMES or any(p.search(name.lower()) for p in TARGET_DERIVED_PATTERNS))]


def check_config(cfg: Config, label: str, allowed_attributes: Iterable[str] = ()) -> None:
    """Reject a config whose inputs could carry a held-out basin's streamflow or identity.

    Parameters
    ----------
    cfg : Config
        The (effective) config of one model stage.
    label : str
        The model label, named in errors.
    allowed_attributes : Iterable[str]
        Attribute names to accept although they match the target-derived list (``--allow-attribute``).

    Raises
    ------
    ValueError
        If ``use_basin_id_encoding`` is on, a target variable is also an input, or a static attribute looks derived
        from streamflow.
    """
    if cfg.use_basin_id_encoding:
        raise ValueError(f"Model '{label}': use_basin_id_encoding is on. A one-hot basin id cannot describe a basin "
                         f"never seen in training; switch it off for ungauged-basin tests.")
    inputs = _input_names(cfg)
    attributes = list(cfg.static_attributes) + list(cfg.hydroatlas_attributes) + list(cfg.evolving_attributes)
    targets_as_inputs = sorted(set(cfg.target_variables) & (set(inputs) | set(attributes)))
    if targets_as_inputs:
        raise ValueError(f"Model '{label}': target variable(s) {targets_as_inputs} are also inputs "
                         f"(dynamic, lagged, autoregressive or static); in an ungauged basin they are unknown.")
    derived = target_derived(attributes, allowed_attributes)
    if derived:
        raise ValueError(f"Model '{label}': static attributes {derived} look computed from observed streamflow and "
                         f"would leak the target of held-out basins. Remove them, or pass --allow-attribute NAME "
                         f"for a name that is not derived from streamflow.")


def check_training_basins(cfg: Config, held_out: Iterable[str], label: str) -> None:
    """Reject a training stage whose training or validation basin file lists a held-out basin.

    Raises
    ------
    ValueError
        If ``train_basin_file`` or ``validation_basin_file`` contains one of ``held_out``.
    """
    held_out = set(held_out)
    for key in ('train_basin_file', 'validation_basin_file'):
        path = cfg.as_dict().get(key)
        if path is None:
            continue
        leaked = sorted(held_out.intersection(load_basin_file(Path(path))))
        if leaked:
            raise ValueError(f"Model '{label}': {key} {path} lists held-out basins {leaked[:10]}"
                             f"{' …' if len(leaked) > 10 else ''} ({len(leaked)} in all); their streamflow would "
                             f"be trained on.")


def check_target_free(cfg: Config, label: str) -> None:
    """Reject a pretraining stage that sees held-out basins but would read their streamflow.

    Raises
    ------
    ValueError
        If the config is not a StefaLand pretraining stage (``stefaland_stage: pretrain``) with
        ``predict_last_n: 0`` (otherwise NH keeps or drops windows by the target's availability).
    """
    stage = cfg.as_dict().get('stefaland_stage')
    predict_last_n = cfg.predict_last_n
    reads_target = any(n > 0 for n in predict_last_n.values()) if isinstance(predict_last_n, dict) \
        else predict_last_n > 0
    if stage != 'pretrain' or reads_target:
        raise ValueError(f"Model '{label}': its pretraining stage would see the held-out basins, which is allowed "
                         f"only for a stage that never reads streamflow (stefaland_stage: pretrain with "
                         f"predict_last_n: 0); this one has stefaland_stage={stage!r}, predict_last_n="
                         f"{predict_last_n}. Pass --pretrain-exclude-held-out to pretrain on the training basins only.")


def _input_names(cfg: Config) -> list[str]:
    raw = cfg.as_dict()
    names = []
    for key in ('dynamic_inputs', 'hindcast_inputs', 'forecast_inputs', 'autoregressive_inputs'):
        names += _flatten(raw.get(key))
    return names + list(raw.get('lagged_features') or {})


def _flatten(value) -> list[str]:
    """Variable names of an NH input spec: a name, a list, a list of lists or a dict per frequency."""
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value
    return [name for item in items for name in _flatten(item)]
