"""The ``stefaland_*`` settings: one table of keys with defaults and accepted values, resolved once per run.

Standard library only: NH's ``Config`` reads this table when it is imported, and reading a config must not import
torch.
"""
import difflib
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # NH's Config patch reads this module's KEYS: importing NH here could patch it half-initialised
    from neuralhydrology.utils.config import Config

PREFIX = 'stefaland_'
SAVED_RUN_MARK = 'package_version'  # NH writes it into the config of every run it trains

# the stages of a StefaLand run and the parts each builds (the names `finetune_modules` addresses)
STAGE_PARTS = {
    'supervised': ('tokens', 'encoder', 'adapter', 'decoder', 'head'),
    'pretrain': ('tokens', 'encoder', 'reconstruction_decoder'),
    'finetune': ('tokens', 'encoder', 'reconstruction_decoder', 'adapter', 'decoder', 'head'),
}
# the values of `stefaland_adapter` (model/adapters.py builds them) and those with a temporal convolution
ADAPTER_NAMES = ('resconn', 'none', 'linear', 'dual_residual')
CONVOLUTION_ADAPTERS = ('resconn', 'dual_residual')


@dataclass(frozen=True)
class Key:
    """What one ``stefaland_*`` config key accepts.

    Parameters
    ----------
    default : Any
        Value used when the key is absent from the config (or null).
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
    below : float | None
        Bound that numbers must stay below (a dropout probability: below 1).
    saved_default : Any
        For a key whose default changed: the value that a config NH saved from a training run (it carries
        ``package_version``) gets when it lacks the key, the default of the versions that trained it. Training
        writes such a key into the run's config (:func:`resolve_changed_defaults`), so every newer run states it.
    """
    default: Any
    kind: type | tuple[type, ...]
    doc: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    below: float | None = None
    saved_default: Any = None

    def default_for(self, raw: dict) -> Any:
        """The value of this key when ``raw`` (a config dict) lacks it."""
        changed = self.saved_default is not None and raw.get(SAVED_RUN_MARK) is not None
        return self.saved_default if changed else self.default

    def check(self, name: str, value: Any) -> None:
        """Raise ``ValueError`` naming the key if ``value`` has the wrong type, is out of range or not a choice."""
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ValueError(f"{name}={value!r} must be of type {' or '.join(k.__name__ for k in kinds)}.")
        if value is None:
            return
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{name}={value!r} is not supported; choose one of {list(self.choices)}.")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{name}={value!r} must be at least {self.minimum}.")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{name}={value!r} must be at most {self.maximum}.")
        if self.below is not None and value >= self.below:
            raise ValueError(f"{name}={value!r} must be below {self.below}.")
        if isinstance(value, dict) and not all(isinstance(group, list) for group in value.values()):
            raise ValueError(f"{name}={value!r} must map each group name to a list of attribute names.")
        names = [n for group in value.values() for n in group] if isinstance(value, dict) else value
        if isinstance(names, list) and not all(isinstance(n, str) for n in names):
            raise ValueError(f"{name}={value!r} must list variable names (strings).")


def _key(default: Any, doc: str, kind: type | tuple[type, ...] | None = None, **limits) -> Any:
    """A :class:`Settings` field whose metadata holds its :class:`Key` (kind from the default when not given)."""
    if kind is None:
        kind = (int, float) if isinstance(default, float) else type(default)
    key = Key(default, kind, doc, **limits)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={'key': key})
    return field(default=default, metadata={'key': key})


@dataclass(frozen=True)
class Settings:
    """Every ``stefaland_*`` setting of a run, checked; each attribute is its key without ``stefaland_``."""
    d_model: int = _key(256, "Token and encoder width D.", minimum=1)
    nheads: int = _key(4, "Attention heads per encoder layer (must divide `stefaland_d_model`).", minimum=1)
    dim_feedforward: int = _key(512, "Hidden width of each encoder layer's feed-forward block.", minimum=1)
    nlayers: int = _key(4, "Number of post-LayerNorm transformer encoder layers.", minimum=1)
    dropout: float = _key(0.1, "Dropout inside the encoder and on its output projection.", minimum=0.0, below=1.0)
    token_hidden: int = _key(64, "Hidden width of each variable's tokenizer MLP (Linear(1→h)→GELU→Linear(h→D)).",
                             minimum=1)
    token_dropout: float = _key(0.1, "Dropout inside each variable's tokenizer MLP.", minimum=0.0, below=1.0)
    adapter: str = _key('resconn', "Adapter between the encoder and the task decoder: `resconn` (residual conv "
                        "branch on the task inputs), `none` (encoder → LSTM decoder), `linear` (linear probe: the head "
                        "reads the embedding), `dual_residual` (dynamic and static residual branches plus a "
                        "feed-forward block).", choices=ADAPTER_NAMES)
    adapter_kernel_size: int = _key(3, "Temporal kernel of the residual adapter's convolution (odd; any size with "
                                    "`stefaland_causal`).", minimum=1)
    causal: bool = _key(True, "No output for day t depends on an input after day t: causal attention over the days "
                        "(the static token reads the attributes only) and a left-padded adapter convolution. False: "
                        "the paper's bidirectional model, every day of the window reads the whole window (a scored "
                        "day sees up to `predict_last_n` − 1 later days of forcing). A finetuning keeps its "
                        "pretraining run's value; a run whose saved config lacks the key "
                        "(trained before the default became True) is bidirectional.", saved_default=False)
    stage: str = _key('supervised', "`supervised` (train on the targets from scratch), `pretrain` (masked "
                      "reconstruction; implies `head`/`loss: reconstruction`) or `finetune` (frozen pretrained "
                      "encoder, with `nh-run finetune`).", choices=tuple(STAGE_PARTS))
    encoder_inputs: list | None = _key(None, "Dynamic inputs the encoder reads (default: all `dynamic_inputs`; when "
                                       "finetuning, the pretraining run's). Other inputs reach only the adapter.",
                                       kind=(list, type(None)))
    encoder_attributes: list | None = _key(None, "Static attributes the encoder reads (default: all; when "
                                           "finetuning, the pretraining run's). Others reach only the adapter.",
                                           kind=(list, type(None)))
    mask_ratio: float = _key(0.5, "Share of each dynamic variable's days hidden per window in pretraining.",
                             minimum=0.0, maximum=1.0)
    min_mask_ratio: float | None = _key(None, "When set, each pretraining window hides its own share of the days, "
                                        "drawn uniformly between this and `stefaland_mask_ratio`, so that "
                                        "pretraining also sees the nearly visible inputs of prediction.",
                                        kind=(int, float, type(None)), minimum=0.0, maximum=1.0)
    input_mask_ratio: float = _key(0.0, "Supervised training: largest share of each dynamic input's days (in spans "
                                   "of `stefaland_mask_min_days`…`stefaland_mask_max_days`) and of the attributes "
                                   "hidden behind their mask vectors per window, each window drawing its share up to "
                                   "this, so that the mask vectors learn to stand in for missing inputs (0: they stay "
                                   "untrained and a window with a missing input predicts NaN).",
                                   minimum=0.0, maximum=0.5)
    mask_min_days: int = _key(30, "Shortest masked window of a dynamic variable, in days.", minimum=1)
    mask_max_days: int = _key(90, "Longest masked window of a dynamic variable, in days.", minimum=1)
    static_mask_ratio: float = _key(0.5, "Share of the maskable static attributes hidden at least per sample in "
                                    "pretraining.", minimum=0.0, maximum=1.0)
    group_mask_probability: float = _key(0.5, "Probability that a group of related attributes is hidden as a whole.",
                                         minimum=0.0, maximum=1.0)
    attribute_groups: dict | None = _key(None, "Groups of related static attributes masked together, {name: "
                                         "[attributes]} (default: built-in climate, topography, soil, geology, "
                                         "vegetation and human groups of Caravan/CAMELS/HydroATLAS names).",
                                         kind=(dict, type(None)))
    never_masked_attributes: list = _key([], "Static attributes pretraining never masks (still hidden where "
                                         "missing).")
    dynamic_loss_weight: float = _key(1.0, "Weight of the dynamic reconstruction loss.", minimum=0.0)
    static_loss_weight: float = _key(0.5, "Weight of the static reconstruction loss.", minimum=0.0)
    visible_loss_weight: float = _key(0.0, "Weight, relative to the hidden positions', of the reconstruction error "
                                      "at the positions the encoder saw (0: hidden positions only).", minimum=0.0)
    reconstruction_decoder: str = _key('lstm', "Pretraining decoder before the per-variable heads: `lstm` (an LSTM "
                                       "of width D over the encoder states) or `mlp` (the heads read each encoder "
                                       "state alone, so the encoder must carry the context).", choices=('lstm', 'mlp'))
    reconstruction_hidden: int = _key(64, "Hidden width of each variable's reconstruction head.", minimum=1)
    strided_evaluation: bool = _key(True, "Evaluate with windows `predict_last_n` days apart, stitched into one "
                                    "prediction per day (False: NH's one window per day).")
    bf16: bool = _key(True, "Run the encoder under bfloat16 autocast on CUDA devices (no effect on the CPU).")
    attention_dropout: float | None = _key(None, "Dropout on the attention weights (default: `stefaland_dropout`); 0 "
                                           "lets PyTorch train with its fused attention kernel on the CPU too: "
                                           "faster, and no T×T attention maps kept for the backward pass.",
                                           kind=(int, float, type(None)), minimum=0.0, below=1.0)
    cache_states: bool = _key(False, "Finetuning: compute the frozen encoder's states of the training windows once "
                              "per run and train adapter, decoder and head on them, at about an LSTM's cost per "
                              "update; the training windows then end every `stefaland_cache_stride` days only.")
    cache_stride: int = _key(7, "Days between the ends of the training windows that `stefaland_cache_states` "
                             "keeps, counted per basin from its first training window.", minimum=1)
    cache_dtype: str = _key('bfloat16', "Precision of the cached encoder states: `bfloat16` (half the memory, "
                            "~1e-2 relative rounding) or `float32`.", choices=('bfloat16', 'float32'))
    store: str | None = _key(None, "A store made by `nh-stefaland pack`: every period's data is read from it "
                             "(through the page cache every process of a node shares) instead of with the class of "
                             "`dataset`.", kind=(str, type(None)))

    @classmethod
    def from_config(cls, cfg: 'Config | dict') -> 'Settings':
        """The checked settings of a config (or raw config dict), defaults filled in.

        Raises
        ------
        ValueError
            If a value has the wrong type, is out of range or is not one of the accepted choices, or two keys do not
            fit together (width and heads, kernel size, mask ratios, masked window lengths).
        """
        raw = cfg if isinstance(cfg, dict) else cfg.as_dict()
        values = {}
        for name, key in KEYS.items():
            value = raw.get(name)
            value = key.default_for(raw) if value is None else value
            key.check(name, value)
            values[name.removeprefix(PREFIX)] = value
        settings = cls(**values)
        if settings.d_model % settings.nheads != 0:
            raise ValueError(f"stefaland_d_model={settings.d_model} must be divisible by "
                             f"stefaland_nheads={settings.nheads}.")
        if (settings.adapter in CONVOLUTION_ADAPTERS and settings.adapter_kernel_size % 2 == 0
                and not settings.causal):
            raise ValueError(f"stefaland_adapter_kernel_size={settings.adapter_kernel_size} must be odd (a centred "
                             f"convolution) for stefaland_adapter: {settings.adapter}; any size works with "
                             f"stefaland_causal: True.")
        if settings.min_mask_ratio is not None and not settings.min_mask_ratio <= settings.mask_ratio < 1.0:
            raise ValueError(f"stefaland_min_mask_ratio={settings.min_mask_ratio} needs stefaland_mask_ratio="
                             f"{settings.mask_ratio} below 1 and at least as large.")
        if settings.mask_min_days > settings.mask_max_days:
            raise ValueError(f"stefaland_mask_min_days={settings.mask_min_days} is larger than "
                             f"stefaland_mask_max_days={settings.mask_max_days}.")
        return settings


KEYS: dict[str, Key] = {PREFIX + entry.name: entry.metadata['key'] for entry in fields(Settings)}


def unset_changed_defaults(raw: dict) -> dict[str, Any]:
    """The keys whose default changed (:attr:`Key.saved_default`) that ``raw`` (a config dict) leaves unset, with the
    value each gets there."""
    return {name: key.default_for(raw) for name, key in KEYS.items()
            if key.saved_default is not None and raw.get(name) is None}


def resolve_changed_defaults(cfg: 'Config') -> None:
    """Write the value of every key whose default changed into ``cfg`` (:func:`unset_changed_defaults`), so that the
    config NH saves with the run states it and the run reads the same under any later default."""
    cfg.update_config(unset_changed_defaults(cfg.as_dict()))


def suggest(unknown_keys: list[str]) -> str:
    """Hint naming the closest ``stefaland_*`` key for each mistyped one ('' when none is close)."""
    hints = []
    for key in unknown_keys:
        matches = difflib.get_close_matches(key, KEYS.keys(), n=1, cutoff=0.6)
        if matches:
            hints.append(f"'{key}' (did you mean '{matches[0]}'?)")
        elif key.startswith(PREFIX):
            hints.append(f"'{key}' (known stefaland keys: {sorted(KEYS)})")
    return "; ".join(hints)
