"""``build.py package``: measure a pretraining run and turn it into a shipped encoder with manifest and model card.

The shipped folder ``nh_stefaland/pretrained/<name>/`` is an NH run folder: ``config.yml`` (the run's, without its
output folders and without the training-loop keys, so a finetuning config must set its own ``epochs`` and
``learning_rate``), ``train_data/train_data_scaler.yml`` (input statistics only), the last ``model_epochNNN.pt``,
``basins.txt`` (every basin pretraining saw), ``manifest.json``, ``pretraining.png`` and ``MODEL_CARD.md``.
"""
import json
import os
import platform
import re
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from ruamel.yaml import YAML

from nh_stefaland import pretrained
from nh_stefaland.tools.reconstruct import reconstruct_period, skill_table
from nh_stefaland.tools.runs import load_run

ROOT = Path(__file__).resolve().parents[2]
VERSION = '1'
# keys of the pretraining loop and of the run's own folders (and its store): not part of the encoder, and a finetuning
# run sets its own
DROPPED_KEYS = ('run_dir', 'train_dir', 'img_log_dir', 'epochs', 'learning_rate', 'max_updates_per_epoch',
                'validate_every', 'validate_n_random_basins', 'save_weights_every', 'log_interval', 'verbose',
                'stefaland_store')
ARCHITECTURE = ('stefaland_causal', 'stefaland_d_model', 'stefaland_nheads', 'stefaland_dim_feedforward',
                'stefaland_nlayers', 'stefaland_token_hidden', 'stefaland_reconstruction_hidden', 'seq_length')
RECIPE = ('batch_size', 'optimizer', 'learning_rate', 'clip_gradient_norm', 'seed', 'stefaland_mask_ratio',
          'stefaland_mask_min_days', 'stefaland_mask_max_days', 'stefaland_static_mask_ratio',
          'stefaland_group_mask_probability', 'stefaland_never_masked_attributes', 'stefaland_dynamic_loss_weight',
          'stefaland_static_loss_weight')
EPOCH_LINE = re.compile(r'^(\S+ \S+): Epoch (\d+) average loss: avg_dynamic_loss: ([\d.]+), '
                        r'avg_static_loss: ([\d.]+), avg_total_loss: ([\d.]+)')
VALIDATION_LINE = re.compile(r'^\S+ \S+: Epoch (\d+) validation reconstruction loss: dynamic: ([\d.]+), '
                             r'static: ([\d.]+), total: ([\d.]+)')
STAMP = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+): ')
RESTART_GAP_S = 600  # an epoch that took longer was interrupted and continued later: its gap is not compute


def package(name: str, run_dir: Path, config: Path) -> Path:
    """Measure ``run_dir`` at its last epoch and write the shipped folder; returns it."""
    yaml = YAML(typ='safe')
    settings = yaml.load(run_dir / 'config.yml')
    cfg, model, scaler, epoch = load_run(run_dir)
    target_statistics = [t for t in settings['target_variables'] if t in scaler['xarray_feature_center']
                         and t not in settings['dynamic_inputs']]
    if target_statistics:
        raise ValueError(f"{run_dir}'s scaler holds statistics of the targets {target_statistics}: not a StefaLand "
                         f"pretraining run of this version.")
    log = training_log(run_dir / 'output.log', epoch)
    print(f"Measuring the reconstruction skill of epoch {epoch} on the test period …")
    skill = skill_table(reconstruct_period(cfg, model, scaler, 'test'), model.encoder_inputs,
                        model.encoder_attributes)

    target = pretrained.FOLDER / name
    if target.exists():
        shutil.rmtree(target)
    (target / 'train_data').mkdir(parents=True)
    weights = run_dir / f'model_epoch{epoch:03d}.pt'
    shutil.copy2(weights, target / weights.name)
    shutil.copy2(run_dir / 'train_data' / 'train_data_scaler.yml', target / 'train_data' / 'train_data_scaler.yml')
    shipped_config = {key: value for key, value in settings.items() if key not in DROPPED_KEYS}
    with open(target / 'config.yml', 'w') as stream:
        YAML().dump(shipped_config, stream)
    basins = Path(settings['train_basin_file'])
    basins = basins if basins.is_absolute() else ROOT / basins
    shutil.copyfile(basins, target / 'basins.txt')

    manifest = {
        'name': name, 'version': VERSION, 'packaged': datetime.now().strftime('%Y-%m-%d'),
        'weights': weights.name, 'sha256': pretrained.sha256(target / weights.name),
        'size_bytes': (target / weights.name).stat().st_size,
        'parameters': int(sum(p.numel() for p in model.parameters())),
        'architecture': {key: settings[key] for key in ARCHITECTURE},
        'dynamic_inputs': list(model.encoder_inputs), 'static_attributes': list(model.encoder_attributes),
        'dataset': settings['dataset'], 'data_dir': settings['data_dir'],
        'basins': [line.strip() for line in basins.read_text().splitlines() if line.strip()],
        'periods': {period: [settings[f'{period}_start_date'], settings[f'{period}_end_date']]
                    for period in ('train', 'validation', 'test')},
        'epoch': epoch, 'epochs_planned': settings['epochs'],
        'updates': epoch * settings['max_updates_per_epoch'], 'batch_size': settings['batch_size'],
        'recipe': {key: settings[key] for key in RECIPE if key in settings},
        'wall_hours': log['seconds'] / 3600, 'hardware': _hardware(),
        'build': f"python benchmarks/pretrained/build.py train --name {name} && "
                 f"python benchmarks/pretrained/build.py package --name {name}",
        'config': str(config.relative_to(ROOT)),
        'reconstruction_test': json.loads(skill.reset_index().to_json(orient='records')),
    }
    (target / pretrained.MANIFEST).write_text(json.dumps(manifest, indent=1) + '\n')
    plot_curve(log['epochs'], log['validation'], settings['max_updates_per_epoch'], target / 'pretraining.png')
    (target / 'MODEL_CARD.md').write_text(model_card(manifest, skill))
    keep_resume_state(name, run_dir, epoch, finished=epoch >= settings['epochs'])
    print(f"Packaged {run_dir} (epoch {epoch}, {manifest['updates']:,} updates) as stefaland:{name}: {target}")
    return target


def keep_resume_state(name: str, run_dir: Path, epoch: int, finished: bool) -> None:
    """What ``build.py train`` needs besides the shipped weights to continue an unfinished pretraining elsewhere:
    the run's config, its log and the optimizer state of ``epoch``, in ``benchmarks/pretrained/resume/<name>/``."""
    state = Path(__file__).resolve().parent / 'resume' / name
    if state.exists():
        shutil.rmtree(state)
    if finished:
        return
    state.mkdir(parents=True)
    for source in ('config.yml', 'output.log', f'optimizer_state_epoch{epoch:03d}.pt'):
        shutil.copyfile(run_dir / source, state / source)


def training_log(path: Path, last_epoch: int) -> dict:
    """Per-epoch training and validation losses up to ``last_epoch`` and the compute time, from NH's output.log.

    Returns
    -------
    dict
        ``epochs`` (DataFrame: epoch, dynamic, static, total), ``validation`` (the same for the validated epochs),
        ``seconds``: time from the run's start to ``last_epoch``, summed over consecutive log lines, without the
        pauses between an interrupted run and its continuation (gaps over :data:`RESTART_GAP_S`).
    """
    rows, validation, times = [], [], []
    for line in path.read_text().splitlines():
        stamp = STAMP.match(line)
        if stamp is None:
            continue
        if (match := EPOCH_LINE.match(line)) and int(match.group(2)) > last_epoch:
            break
        times.append(_time(stamp.group(1)).timestamp())
        if match:
            rows.append([int(match.group(2))] + [float(v) for v in match.group(3, 4, 5)])
        elif match := VALIDATION_LINE.match(line):
            validation.append([int(match.group(1))] + [float(v) for v in match.group(2, 3, 4)])
    steps = np.diff(times)
    columns = ['epoch', 'dynamic', 'static', 'total']
    return {'epochs': pd.DataFrame(rows, columns=columns).drop_duplicates('epoch', keep='last'),
            'validation': pd.DataFrame(validation, columns=columns).drop_duplicates('epoch', keep='last'),
            'seconds': float(steps[steps < RESTART_GAP_S].sum())}


def plot_curve(epochs: pd.DataFrame, validation: pd.DataFrame, updates_per_epoch: int, path: Path) -> None:
    """Training and validation reconstruction losses over the pretraining updates."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.6))
    for part, colour in (('dynamic', 'tab:blue'), ('static', 'tab:orange')):
        axis.plot(epochs['epoch'] * updates_per_epoch, epochs[part], color=colour, lw=1.2,
                  label=f'{part}, training (masked positions)')
        if len(validation):
            axis.plot(validation['epoch'] * updates_per_epoch, validation[part], 'o--', color=colour, ms=4,
                      label=f'{part}, validation period')
    axis.set(xlabel='pretraining updates (batches of windows)', ylabel='reconstruction loss (normalised units)')
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _direction(causal: bool) -> str:
    """The model card's paragraph on what the encoder's state of a day reads."""
    if causal:
        return ("**Causal** (`stefaland_causal: True`): the encoder's state of day t reads the days up to t only (a "
                "causal masked autoencoder). Finetunings of it are causal: no prediction reads a later day of forcing.")
    return ("**Bidirectional** (`stefaland_causal: False`), as the paper's: the encoder's state of every day reads the "
            "whole window. Finetunings of it keep that mode (a finetuning config without the key inherits it; "
            "`stefaland_causal: True` stops with an error), so with the strided evaluation a scored day reads up to "
            "`predict_last_n` − 1 later days of forcing: right for hindcasts, not for a forecast or a like-for-like "
            "comparison with NH's LSTM (docs/causal.md).")


def model_card(manifest: dict, skill: pd.DataFrame) -> str:
    """The model card's markdown, every number from ``manifest`` and the measured ``skill`` table."""
    arch = manifest['architecture']
    recipe = manifest['recipe']
    periods = manifest['periods']
    rates = ', '.join(f"{value:g} from epoch {key}" for key, value in recipe['learning_rate'].items()) \
        if isinstance(recipe.get('learning_rate'), dict) else recipe.get('learning_rate', '—')
    dynamic = skill.loc[manifest['dynamic_inputs']]
    static = skill.drop(index=manifest['dynamic_inputs'])
    finished = manifest['epoch'] >= manifest['epochs_planned']
    progress = ("" if finished else
                f" The recipe plans {manifest['epochs_planned']} epochs; this version holds epoch {manifest['epoch']} "
                f"(pretraining continues with `build.py train`, and the next version will hold the rest).")
    return f"""# Model card: `stefaland:{manifest['name']}` (version {manifest['version']})

A StefaLand encoder (per-variable token MLPs, a transformer over one token per day plus one static token)
pretrained as a masked autoencoder on daily forcings and static catchment attributes of
{len(manifest['basins'])} CAMELS-US basins in Caravan layout. It has never read streamflow. Finetune it with
`base_run_dir: stefaland:{manifest['name']}` (docs/pretrain_finetune.md); list it with `nh-stefaland pretrained`.

## Data and licences

- Caravan (Kratzert et al. 2023, *Scientific Data* 10, 61; CC-BY-4.0): the basins' time series and attributes.
- ERA5-Land (Muñoz Sabater et al. 2021, *ESSD* 13, 4349–4383; Copernicus licence): the forcings, as in Caravan.
- CAMELS-US (Newman et al. 2015, *HESS* 19, 209–223; Addor et al. 2017, *HESS* 21, 5293–5313): the basins and
  their topography, soil, geology and vegetation attributes.

Derived weights: use them under the terms of these sources and cite them with StefaLand (Kraabel et al.,
arXiv:2509.17942).

## What it has seen

- **Basins:** {len(manifest['basins'])}, listed in `basins.txt` (dataset `{manifest['dataset']}`, ids such as
  `{manifest['basins'][0]}`). Held-out tests on these basins are not ungauged for the encoder's inputs: it saw their
  forcings and attributes (never their streamflow). For a clean ungauged-basin test, test on basins outside this
  list, or pretrain within the folds with `nh-stefaland pub --pretrain`.
- **Period:** training windows {periods['train'][0]} … {periods['train'][1]}; validation
  {periods['validation'][0]} … {periods['validation'][1]}; the skill below is on {periods['test'][0]} …
  {periods['test'][1]}, not trained on (but overlapping the validation period).
- **Dynamic inputs ({len(manifest['dynamic_inputs'])}):** {', '.join(f'`{v}`' for v in manifest['dynamic_inputs'])}
  (Caravan names, ERA5-Land daily values).
- **Static attributes ({len(manifest['static_attributes'])}):** {', '.join(f'`{a}`' for a in manifest['static_attributes'])}.
- **Normalisation:** NH's, stored in `train_data/train_data_scaler.yml`: each variable centred by its mean and scaled
  by its standard deviation over the {len(manifest['basins'])} basins' training period; finetuning reuses these for the
  encoder's inputs. The scaler holds no target statistics (a finetuning run computes its own from its training basins).

## Architecture and size

d {arch['stefaland_d_model']}, {arch['stefaland_nheads']} heads, feed-forward {arch['stefaland_dim_feedforward']},
{arch['stefaland_nlayers']} encoder layers, token MLPs of width {arch['stefaland_token_hidden']}, windows of
{arch['seq_length']} days (a finetuning config keeps `seq_length: {arch['seq_length']}`); the reconstruction decoder
(hidden {arch['stefaland_reconstruction_hidden']}) is in the same file. {manifest['parameters']:,} parameters,
{manifest['size_bytes'] / 1e6:.2f} MB (`{manifest['weights']}`, sha256 `{manifest['sha256']}`).

{_direction(arch['stefaland_causal'])}

## Pretraining recipe and compute

{manifest['updates']:,} updates of {manifest['batch_size']} windows (epoch {manifest['epoch']}), {recipe.get('optimizer')},
learning rate {rates}, gradient norm clipped at {recipe.get('clip_gradient_norm')}, seed {recipe.get('seed')}.
Masking: about {recipe.get('stefaland_mask_ratio')} of each dynamic variable hidden in spans of
{recipe.get('stefaland_mask_min_days')}–{recipe.get('stefaland_mask_max_days')} days; about
{recipe.get('stefaland_static_mask_ratio')} of the attributes, whole groups with probability
{recipe.get('stefaland_group_mask_probability')}; never masked: {recipe.get('stefaland_never_masked_attributes')}.
Compute: {manifest['wall_hours']:.1f} hours on {manifest['hardware']}.{progress} These are the
ungauged-basin benchmark's defaults (`benchmarks/ungauged/stefaland_pretrain.yml`) with 10× its updates planned; the
pretraining study that is to choose better ones has not been run yet.

Rebuild from the data (same recipe, same seed; `{manifest['config']}`):

```bash
{manifest['build'].replace(' && ', chr(10))}
```

![Reconstruction loss over the pretraining updates](pretraining.png)

## Reconstruction skill (test period, hidden positions only)

RMSE and NSE in normalised units on the positions hidden by the masking, against the two baselines a user would try
first: the variable's mean (the normalised value 0, so NSE ≈ 0 by construction) and linear interpolation across the
hidden span (dynamic inputs only).

{_skill_markdown(dynamic)}

Static attributes, per attribute over the basins where it was hidden (reconstructed from the other attributes and
the forcings; n counts basin-windows, and a never-masked attribute has none), and all together. The test period is
unseen, but the basins are the pretraining basins, whose attributes do not change with the period: this is partly
recall of seen basins, not skill on new ones (the ungauged-basin benchmark reconstructs held-out basins).

{_skill_markdown(static)}

## Intended uses

- Finetuning to streamflow (or another daily target) with a frozen encoder and an adapter, on basins with these
  inputs in Caravan layout, through `nh-run finetune` or `nh-stefaland pub`.
- Static basin embeddings for other models: `nh-stefaland embed --run-dir stefaland:{manifest['name']} --basin-file
  FILE --data-dir CARAVAN_DIR`.

## Not intended

- Claims of ungauged-basin skill on the basins in `basins.txt` without saying that the encoder saw their inputs.
- Other forcing products (Daymet, NLDAS, …) under the ERA5-Land names: the normalisation and the learned responses
  are ERA5-Land's.
- Basins far outside CAMELS-US climates and sizes without a check: it saw only the contiguous US.
- Sub-daily data, or `seq_length` other than {arch['seq_length']}.
- As evidence that pretraining helps: on the ungauged-basin benchmark pretraining has not yet beaten training from
  scratch at equal finetuning updates (benchmarks/ungauged/README.md).
"""


def _skill_markdown(table: pd.DataFrame) -> str:
    columns = [c for c in table.columns if c != 'kind' and table[c].notna().any()]
    header = '| variable | ' + ' | '.join(columns) + ' |\n|---|' + '---|' * len(columns)
    rows = ['| ' + ' | '.join([f'`{name}`' if not name.startswith('static') else name]
                              + [_number(row[c]) for c in columns]) + ' |' for name, row in table.iterrows()]
    return '\n'.join([header] + rows)


def _number(value) -> str:
    if isinstance(value, (int, np.integer)):
        return f'{value:,}'
    try:
        return '—' if pd.isna(value) else f'{float(value):.3f}'
    except (TypeError, ValueError):
        return str(value)


def _time(stamp: str) -> datetime:
    return datetime.strptime(stamp, '%Y-%m-%d %H:%M:%S,%f')


def _hardware() -> str:
    return f"a {os.cpu_count()}-core {platform.machine()} CPU, 1 PyTorch thread (build.py train), no GPU"
