"""Checks of a config against what StefaLand can honour, run when the config is read and before anything is built.

They read NH's own ``Config`` properties and the ``stefaland_*`` keys through :class:`Settings`, never through
properties that only the registration creates: the model builds on an unpatched NeuralHydrology too.
"""
import difflib
import logging

from neuralhydrology.utils.config import Config

from nh_stefaland.model.settings import STAGE_PARTS, Settings

LOGGER = logging.getLogger(__name__)

UNSUPPORTED_OPTIONS = {
    'autoregressive_inputs': "autoregressive inputs",
    'mass_inputs': "mass inputs",
    'evolving_attributes': "evolving attributes",
    'hindcast_inputs': "separate hindcast/forecast inputs",
    'forecast_inputs': "separate hindcast/forecast inputs",
}
# what stefaland_stage: pretrain implies for NH's `head` and `loss`
PRETRAINING_HEAD = PRETRAINING_LOSS = 'reconstruction'


def check_config(cfg: Config) -> Settings:
    """Every check of a StefaLand config that needs no data; its settings, resolved once.

    Raises
    ------
    ValueError
        If an NH option is one StefaLand cannot honour, a ``stefaland_*`` value or a combination of keys is not
        accepted, the stage does not fit head, loss, encoder variables or ``finetune_modules``.
    """
    check_model_options(cfg)
    settings = check_raw_config(cfg.as_dict())
    check_stage(cfg, settings)
    return settings


def check_raw_config(raw: dict) -> Settings:
    """The checks that the config's dict alone decides, run by NH's ``Config`` as it reads a StefaLand config.

    Raises
    ------
    ValueError
        If a ``stefaland_*`` value or a combination of keys is not accepted (see :meth:`Settings.from_config`), or
        ``head: umal`` is asked with ``predict_last_n`` other than 1.
    """
    settings = Settings.from_config(raw)
    predict_last_n = raw.get('predict_last_n')
    if str(raw.get('head')).lower() == 'umal' and settings.stage != 'pretrain' and predict_last_n != 1:
        raise ValueError(f"head: umal needs predict_last_n: 1, got predict_last_n={predict_last_n}: NH 1.13's UMAL "
                         f"sampler (samplingutils.sample_umal) fails at evaluation for more steps.")
    return settings


def check_model_options(cfg: Config) -> None:
    """Reject NH options that StefaLand cannot honour.

    Raises
    ------
    ValueError
        If the config asks for several frequencies, autoregressive or mass inputs, evolving attributes, forecast
        inputs, basin one-hot encoding, grouped dynamic inputs or no static attributes.
    """
    if len(cfg.use_frequencies) > 1:
        raise ValueError(f"model: stefaland supports a single frequency, got use_frequencies={cfg.use_frequencies}.")
    raw = cfg.as_dict()
    for option, what in UNSUPPORTED_OPTIONS.items():
        if raw.get(option):
            raise ValueError(f"model: stefaland does not support {what} ({option}={raw[option]}).")
    if cfg.use_basin_id_encoding:
        raise ValueError("model: stefaland does not support use_basin_id_encoding: it identifies basins by their "
                         "attributes, so that it can predict in basins never seen in training.")
    if not isinstance(cfg.dynamic_inputs, list) or any(isinstance(v, list) for v in cfg.dynamic_inputs):
        raise ValueError(f"model: stefaland needs dynamic_inputs as a flat list of variables, "
                         f"got {cfg.dynamic_inputs!r}.")
    if not cfg.dynamic_inputs:
        raise ValueError("model: stefaland needs at least one variable in dynamic_inputs.")
    if not (cfg.static_attributes or cfg.hydroatlas_attributes):
        raise ValueError("model: stefaland needs static_attributes (or hydroatlas_attributes): they form the "
                         "static token through which the model knows the basin.")
    if len(set(cfg.dynamic_inputs)) != len(cfg.dynamic_inputs):
        raise ValueError(f"dynamic_inputs lists a variable twice: {cfg.dynamic_inputs}.")
    for option in ('statics_embedding', 'dynamics_embedding'):
        if raw.get(option):
            LOGGER.warning(f"{option} is not used by model: stefaland (it embeds every variable on its own).")


def encoder_variables(cfg: Config, settings: Settings) -> tuple[list[str], list[str]]:
    """Dynamic inputs (in order) and static attributes (alphabetical) that the encoder reads: its token layout."""
    inputs, attributes = settings.encoder_inputs, settings.encoder_attributes
    inputs = list(cfg.dynamic_inputs) if inputs is None else list(inputs)
    attributes = cfg.static_attributes + cfg.hydroatlas_attributes if attributes is None else attributes
    return inputs, sorted(attributes)


def check_stage(cfg: Config, settings: Settings) -> None:
    """Check that head, loss, encoder variables and ``finetune_modules`` fit ``stefaland_stage``.

    ``stefaland_stage: pretrain`` implies ``head``/``loss: reconstruction``; writing them is accepted, with a note.

    Raises
    ------
    ValueError
        If pretraining names another head or loss (or another stage names the reconstruction ones), finetuning was
        not started by ``nh-run finetune``, the encoder is asked for variables that the config does not load
        (outside finetuning, where they are fed as missing), or a finetuning run names a part the model lacks.
    """
    stage = settings.stage
    written = {key: cfg.as_dict().get(key) for key in ('head', 'loss')}
    implied = {'head': PRETRAINING_HEAD, 'loss': PRETRAINING_LOSS}
    if stage == 'pretrain':
        contradicting = {key: value for key, value in written.items()
                         if value is not None and str(value).lower() != implied[key]}
        if contradicting:
            raise ValueError(f"stefaland_stage: pretrain trains the reconstruction head and loss; "
                             f"{', '.join(f'{k}: {v}' for k, v in contradicting.items())} contradicts it. "
                             f"Remove {' and '.join(contradicting)} from the config.")
        redundant = [key for key, value in written.items() if value is not None]
        if redundant:
            LOGGER.info(f"{' and '.join(f'{key}: reconstruction' for key in redundant)} can go: "
                        f"stefaland_stage: pretrain implies it.")
        if cfg.predict_last_n != 0:
            LOGGER.warning(f"stefaland_stage: pretrain with predict_last_n={cfg.predict_last_n} drops every window "
                           f"without target observations; predict_last_n: 0 keeps basins without streamflow.")
    else:
        reconstruction = [key for key, value in written.items() if str(value).lower() == implied[key]]
        if reconstruction:
            raise ValueError(f"{', '.join(reconstruction)}: reconstruction belongs to stefaland_stage: pretrain, "
                             f"got stefaland_stage: {stage}.")
    if stage == 'finetune' and not cfg.is_finetuning:
        raise ValueError("stefaland_stage: finetune starts from a pretraining run: use `nh-run finetune` with "
                         "base_run_dir pointing to a run trained with stefaland_stage: pretrain.")
    if cfg.is_finetuning:
        _check_finetune_modules(cfg.finetune_modules, stage)
    inputs, attributes = encoder_variables(cfg, settings)
    if not inputs or not attributes:
        raise ValueError(f"The encoder needs at least one dynamic input and one static attribute, got "
                         f"stefaland_encoder_inputs={inputs}, stefaland_encoder_attributes={attributes}.")
    if stage != 'finetune':
        absent = [v for v in inputs if v not in cfg.dynamic_inputs]
        absent += [a for a in attributes if a not in cfg.static_attributes + cfg.hydroatlas_attributes]
        if absent:
            raise ValueError(f"stefaland_encoder_inputs/stefaland_encoder_attributes name {absent}, which are not "
                             f"in dynamic_inputs or static_attributes.")


def warn_about_absent_encoder_variables(encoder_variables: list[str], loaded: list[str]) -> None:
    """Say which variables a pretrained encoder reads that the config does not load (fed as missing throughout)."""
    absent = [name for name in encoder_variables if name not in loaded]
    if absent:
        LOGGER.warning(f"The pretrained encoder reads {absent}, which this config does not load: they are fed as "
                       f"missing (their learned mask vectors) throughout.")

def _check_finetune_modules(modules: list[str] | dict | str, stage: str) -> None:
    """Every part ``finetune_modules`` names is a part of the model (NH would only log unknown names)."""
    names = list(modules) if isinstance(modules, (list, dict)) else [modules]
    parts = STAGE_PARTS[stage]
    unknown = [name for name in names if name not in parts]
    if unknown:
        hints = [f"'{name}' (did you mean '{match[0]}'?)" if (match := difflib.get_close_matches(name, parts, n=1))
                 else f"'{name}'" for name in unknown]
        raise ValueError(f"finetune_modules names {', '.join(hints)}, which model: stefaland "
                         f"(stefaland_stage: {stage}) does not have; its parts are {list(parts)}.")

