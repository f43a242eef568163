"""The ``stefaland_*`` config keys: one table of defaults and accepted values, and the checks run before training."""
import difflib
import logging
from dataclasses import dataclass
from typing import Any

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Key:
    """One ``stefaland_*`` config key.

    Parameters
    ----------
    default : Any
        Value used when the key is absent from the config.
    kind : type | tuple[type, ...]
        Accepted Python type(s) of the value.
    doc : str
        One-line description, shown in the README reference.
    choices : tuple | None
        Accepted values, if the key is an enumeration.
    minimum : float | None
        Smallest accepted value for numbers.
    maximum : float | None
        Largest accepted value for numbers.
    """
    default: Any
    kind: type | tuple[type, ...]
    doc: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None


KEYS: dict[str, Key] = {
    'stefaland_d_model': Key(256, int, "Token and encoder width D.", minimum=1),
    'stefaland_nheads': Key(4, int, "Attention heads per encoder layer (must divide `stefaland_d_model`).", minimum=1),
    'stefaland_dim_feedforward': Key(512, int, "Hidden width of each encoder layer's feed-forward block.", minimum=1),
    'stefaland_nlayers': Key(4, int, "Number of post-LayerNorm transformer encoder layers.", minimum=1),
    'stefaland_dropout': Key(0.1, (int, float), "Dropout inside the encoder and on its output projection.",
                             minimum=0.0),
    'stefaland_token_hidden': Key(64, int, "Hidden width of each variable's tokenizer MLP (Linear(1→h)→GELU→Linear(h→D)).",
                                  minimum=1),
    'stefaland_token_dropout': Key(0.1, (int, float), "Dropout inside each variable's tokenizer MLP.", minimum=0.0),
    'stefaland_adapter': Key('resconn', str, "Adapter between the encoder and the task decoder: `resconn` "
                             "(residual conv branch on the task inputs), `none` (encoder → LSTM decoder), `linear` "
                             "(linear probe: the head reads the embedding), `dual_residual` (dynamic and static "
                             "residual branches plus a feed-forward block).",
                             choices=('resconn', 'none', 'linear', 'dual_residual')),
    'stefaland_adapter_kernel_size': Key(3, int, "Temporal kernel of the residual adapter's convolution (odd).",
                                         minimum=1),
    'stefaland_stage': Key('supervised', str, "`supervised` (train on the targets from scratch), `pretrain` "
                           "(masked reconstruction; needs `head: reconstruction`, `loss: reconstruction`) or "
                           "`finetune` (frozen pretrained encoder, with `nh-run finetune`).",
                           choices=('supervised', 'pretrain', 'finetune')),
    'stefaland_encoder_inputs': Key(None, (list, type(None)), "Dynamic inputs the encoder reads (default: all "
                                    "`dynamic_inputs`; when finetuning, the pretraining run's). Other inputs reach "
                                    "only the adapter."),
    'stefaland_encoder_attributes': Key(None, (list, type(None)), "Static attributes the encoder reads (default: all; "
                                        "when finetuning, the pretraining run's). Others reach only the adapter."),
    'stefaland_mask_ratio': Key(0.5, (int, float), "Share of each dynamic variable's days hidden per window in "
                                "pretraining.", minimum=0.0, maximum=1.0),
    'stefaland_mask_min_days': Key(30, int, "Shortest masked window of a dynamic variable, in days.", minimum=1),
    'stefaland_mask_max_days': Key(90, int, "Longest masked window of a dynamic variable, in days.", minimum=1),
    'stefaland_static_mask_ratio': Key(0.5, (int, float), "Share of the maskable static attributes hidden at least "
                                       "per sample in pretraining.", minimum=0.0, maximum=1.0),
    'stefaland_group_mask_probability': Key(0.5, (int, float), "Probability that a group of related attributes is "
                                            "hidden as a whole.", minimum=0.0, maximum=1.0),
    'stefaland_attribute_groups': Key(None, (dict, type(None)), "Groups of related static attributes masked together, "
                                      "{name: [attributes]} (default: built-in climate, topography, soil, geology, "
                                      "vegetation and human groups of Caravan/CAMELS/HydroATLAS names)."),
    'stefaland_never_masked_attributes': Key([], list, "Static attributes pretraining never masks (still hidden "
                                             "where missing)."),
    'stefaland_dynamic_loss_weight': Key(1.0, (int, float), "Weight of the dynamic reconstruction loss.",
                                         minimum=0.0),
    'stefaland_static_loss_weight': Key(0.5, (int, float), "Weight of the static reconstruction loss.", minimum=0.0),
    'stefaland_reconstruction_hidden': Key(64, int, "Hidden width of each variable's reconstruction head.",
                                           minimum=1),
    'stefaland_strided_evaluation': Key(True, bool, "Evaluate with windows `predict_last_n` days apart, stitched "
                                        "into one prediction per day (False: NH's one window per day)."),
    'stefaland_bf16': Key(True, bool, "Run the encoder under bfloat16 autocast on CUDA devices (no effect on the CPU)."),
    'stefaland_attention_dropout': Key(None, (int, float, type(None)), "Dropout on the attention weights (default: "
                                       "`stefaland_dropout`); 0 lets PyTorch train with its fused attention kernel on "
                                       "the CPU too: faster, and no T×T attention maps kept for the backward pass."),
}

UNSUPPORTED_OPTIONS = {
    'autoregressive_inputs': "autoregressive inputs",
    'mass_inputs': "mass inputs",
    'evolving_attributes': "evolving attributes",
    'hindcast_inputs': "separate hindcast/forecast inputs",
    'forecast_inputs': "separate hindcast/forecast inputs",
}


def resolve(raw: dict) -> dict[str, Any]:
    """All ``stefaland_*`` values of a raw config dict, defaults filled in and checked.

    Raises
    ------
    ValueError
        If a value has the wrong type, is out of range or is not one of the accepted choices.
    """
    values = {}
    for name, key in KEYS.items():
        value = raw.get(name, key.default)
        if value is None:
            value = key.default
        if (isinstance(value, bool) and bool not in _as_tuple(key.kind)) or not isinstance(value, key.kind):
            raise ValueError(f"{name}={value!r} must be of type {_type_names(key.kind)}.")
        if key.choices is not None and value not in key.choices:
            raise ValueError(f"{name}={value!r} is not supported; choose one of {list(key.choices)}.")
        if key.minimum is not None and value < key.minimum:
            raise ValueError(f"{name}={value!r} must be at least {key.minimum}.")
        if key.maximum is not None and value > key.maximum:
            raise ValueError(f"{name}={value!r} must be at most {key.maximum}.")
        values[name] = value
    return values


def check_model_options(cfg) -> None:
    """Reject NH options that StefaLand cannot honour, before anything is built.

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


def encoder_variables(cfg) -> tuple[list[str], list[str]]:
    """Dynamic inputs (in order) and static attributes (alphabetical) that the encoder reads: its token layout."""
    inputs = cfg.stefaland_encoder_inputs
    attributes = cfg.stefaland_encoder_attributes
    inputs = list(cfg.dynamic_inputs) if inputs is None else list(inputs)
    attributes = cfg.static_attributes + cfg.hydroatlas_attributes if attributes is None else attributes
    return inputs, sorted(attributes)


def check_stage(cfg, settings: dict[str, Any]) -> None:
    """Check that head, loss, masking and encoder variables fit ``stefaland_stage``, before anything is built.

    Raises
    ------
    ValueError
        If pretraining lacks ``head``/``loss: reconstruction`` (or another stage uses them), finetuning was not
        started by ``nh-run finetune``, the masked window lengths are inverted, or the encoder is asked for
        variables that the config does not load (outside finetuning, where they are fed as missing).
    """
    stage = settings['stefaland_stage']
    reconstruction = [key for key in ('head', 'loss') if getattr(cfg, key).lower() == 'reconstruction']
    if stage == 'pretrain' and len(reconstruction) < 2:
        raise ValueError(f"stefaland_stage: pretrain needs head: reconstruction and loss: reconstruction, got "
                         f"head: {cfg.head}, loss: {cfg.loss}.")
    if stage != 'pretrain' and reconstruction:
        raise ValueError(f"{', '.join(reconstruction)}: reconstruction belongs to stefaland_stage: pretrain, "
                         f"got stefaland_stage: {stage}.")
    if stage == 'pretrain' and cfg.predict_last_n != 0:
        LOGGER.warning(f"stefaland_stage: pretrain with predict_last_n={cfg.predict_last_n} drops every window "
                       f"without target observations; predict_last_n: 0 keeps basins without streamflow.")
    if stage == 'finetune' and not cfg.is_finetuning:
        raise ValueError("stefaland_stage: finetune starts from a pretraining run: use `nh-run finetune` with "
                         "base_run_dir pointing to a run trained with stefaland_stage: pretrain.")
    if settings['stefaland_mask_min_days'] > settings['stefaland_mask_max_days']:
        raise ValueError(f"stefaland_mask_min_days={settings['stefaland_mask_min_days']} is larger than "
                         f"stefaland_mask_max_days={settings['stefaland_mask_max_days']}.")
    inputs, attributes = encoder_variables(cfg)
    if not inputs or not attributes:
        raise ValueError(f"The encoder needs at least one dynamic input and one static attribute, got "
                         f"stefaland_encoder_inputs={inputs}, stefaland_encoder_attributes={attributes}.")
    if stage != 'finetune':
        absent = [v for v in inputs if v not in cfg.dynamic_inputs]
        absent += [a for a in attributes if a not in cfg.static_attributes + cfg.hydroatlas_attributes]
        if absent:
            raise ValueError(f"stefaland_encoder_inputs/stefaland_encoder_attributes name {absent}, which are not "
                             f"in dynamic_inputs or static_attributes.")


def suggest(unknown_keys: list[str]) -> str:
    """Hint naming the closest ``stefaland_*`` key for each mistyped one ('' when none is close)."""
    hints = []
    for key in unknown_keys:
        matches = difflib.get_close_matches(key, KEYS.keys(), n=1, cutoff=0.6)
        if matches:
            hints.append(f"'{key}' (did you mean '{matches[0]}'?)")
        elif key.startswith('stefaland_'):
            hints.append(f"'{key}' (known stefaland keys: {sorted(KEYS)})")
    return ("; ".join(hints)) if hints else ""


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _type_names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))
