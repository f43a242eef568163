"""`nh-stefaland pub`: folds, leakage guards, resumable runs of two models on the shipped sample, the report."""
import argparse
import concurrent.futures
import contextlib
import itertools
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import tqdm
import xarray
from ruamel.yaml import YAML

from neuralhydrology.datasetzoo import get_dataset
from neuralhydrology.datautils.utils import load_scaler
from neuralhydrology.evaluation.metrics import calculate_metrics
from neuralhydrology.utils.config import Config

from nh_stefaland.tools import cli
from nh_stefaland.tools.pub import cli as pub, folds as pub_folds, leakage as pub_leakage, plan as pub_plan
from nh_stefaland.tools.pub import markdown as pub_markdown, report as pub_report, runs as pub_runs
from nh_stefaland.tools.pub import hydrographs as pub_hydrographs, lookahead as pub_lookahead, maps as pub_maps
from nh_stefaland.tools.pub import scoring as pub_scoring, stats as pub_stats, workers as pub_workers
from nh_stefaland.tools.pub import schedule as pub_schedule, settings as pub_settings
from nh_stefaland.tools.pub.report import REPORT_METRICS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / 'examples' / 'data' / 'caravan_camels_sample'
# finetuning settings laid over the pretraining run's config (NH's finetune file, without base_run_dir)
FINETUNE = {'stefaland_stage': 'finetune', 'head': 'regression', 'loss': 'NSE', 'metrics': ['NSE'],
            'predict_last_n': 5, 'finetune_modules': ['adapter', 'decoder', 'head'], 'validate_every': None}
BASINS = ['camels_01022500', 'camels_01632900', 'camels_02177000', 'camels_03173000', 'camels_04045500',
          'camels_05120500']


def _config(directory: Path, name: str, source: str = 'caravan_sample', **changes) -> Path:
    """tests/configs/<source>.yml with an absolute data_dir and ``changes``, written to ``directory``."""
    yaml = YAML()
    cfg = yaml.load(ROOT / 'tests' / 'configs' / f'{source}.yml')
    cfg.update({'data_dir': str(SAMPLE), **changes})
    path = directory / f'{name}.yml'
    yaml.dump(cfg, path)
    return path


def _basin_file(directory: Path, basins: list[str] = BASINS) -> Path:
    path = directory / 'basins.txt'
    path.write_text('\n'.join(basins) + '\n')
    return path


def _pub(*arguments) -> int:
    return cli.main(['pub', *map(str, arguments)])


def _run_folders(output: Path) -> set[Path]:
    return {path for path in (output / 'runs').glob('*/fold_*/*') if path.is_dir()}


def test_two_models_two_folds_report_rerun_and_failed_runs(tmp_path, capsys):
    stefaland = _config(tmp_path, 'stefaland')
    lstm = _config(tmp_path, 'lstm', model='cudalstm')
    broken = _config(tmp_path, 'broken', dynamic_inputs=['no_such_forcing'])
    output = tmp_path / 'pub'
    common = ['--basin-file', _basin_file(tmp_path), '--output-dir', output, '--folds', 2]

    assert _pub('--model', f'stefaland={stefaland}', '--model', f'lstm={lstm}', '--model', f'broken={broken}',
                *common, '--jobs', 2) == 1
    assert 'folds × models' in capsys.readouterr().out

    report = output / 'report'
    per_basin = pd.read_csv(report / 'per_basin.csv', dtype={'basin': str})
    assert list(per_basin.columns) == ['basin', 'fold', 'group', 'model', 'seed', 'days', *REPORT_METRICS]
    assert sorted(per_basin['model'].unique()) == ['lstm', 'stefaland']
    for _, rows in per_basin.groupby('model'):
        assert sorted(rows['basin']) == sorted(BASINS) and set(rows['fold']) == {1, 2}
    assert per_basin['NSE'].notna().all()
    summary = pd.read_csv(report / 'summary.csv')
    nse = summary[summary['metric'] == 'NSE'].set_index('model')
    assert (nse['n'] == len(BASINS)).all()
    assert nse.loc['lstm', 'median'] == pytest.approx(per_basin.loc[per_basin['model'] == 'lstm', 'NSE'].median())
    paired = pd.read_csv(report / 'paired.csv')
    assert set(paired['metric']) == {'NSE', 'KGE', 'RMSE'} and (paired['n'] == len(BASINS)).all()
    assert (paired['ci_low'] <= paired['median_difference']).all()
    assert (paired['median_difference'] <= paired['ci_high']).all()
    assert (report / 'nse_cdf.png').read_bytes()[:4] == b'\x89PNG'
    markdown = (report / 'report.md').read_text()
    assert 'PUB: 2 random basin folds' in markdown and '![NSE CDF per model](nse_cdf.png)' in markdown
    for name in ('nse_map.png', 'nse_difference_stefaland_vs_lstm.png', 'hydrographs_stefaland_vs_lstm.png'):
        assert (report / name).read_bytes()[:4] == b'\x89PNG' and f']({name})' in markdown
    failed_log = output / 'runs' / 'broken' / 'fold_01' / 'pub.log'
    assert 'broken fold_01' in markdown and str(failed_log) in markdown
    assert 'no_such_forcing' in failed_log.read_text()
    run_log, = (output / 'runs' / 'lstm' / 'fold_01').glob('lstm_fold_01_*/output.log')
    assert 'Stored metrics' in run_log.read_text()

    folds = (output / 'folds.csv').read_text()
    runs = _run_folders(output)
    assert _pub('--model', f'stefaland={stefaland}', '--model', f'lstm={lstm}', *common) == 0
    assert _run_folders(output) == runs
    assert (output / 'folds.csv').read_text() == folds

    (report / 'report.md').unlink()
    assert _pub('--report-only', output) == 0
    assert (report / 'report.md').read_text() == markdown

    times = markdown.split('## Run time')[1].split('##')[0]
    assert '| lstm | 2 |' in times and '| stefaland | 2 |' in times and 'broken' not in times
    assert '| stefaland | 2/2 | 6 |' in markdown and 'Models with fewer folds' not in markdown
    assert "**lstm**" in markdown and "later days: 0 (cudalstm, scored at each window's last day)" in markdown
    small = _config(tmp_path, 'small', model='cudalstm', hidden_size=4)
    assert _pub('--model', f'small={small}', *common, '--fold', 2) == 0
    assert _run_folders(output) - runs == set((output / 'runs' / 'small' / 'fold_02').glob('small_fold_02_*'))
    markdown = (report / 'report.md').read_text()
    assert '| small | 1/2 | 3 |' in markdown and 'Models with fewer folds' in markdown
    with pytest.raises(ValueError, match=r"--fold \[3\]: the folds are numbered \[1, 2\]"):
        _pub('--model', f'small={small}', *common, '--fold', 3)

    _config(tmp_path, 'lstm', model='cudalstm', hidden_size=4)
    with pytest.raises(ValueError, match="Model 'lstm' fold_01 .* was run with another config"):
        _pub('--model', f'lstm={lstm}', *common)
    with pytest.raises(ValueError, match="holds folds made with other"):
        _pub('--model', f'stefaland={stefaland}', *common[:-1], 3)


def test_pretraining_on_all_basins_keeps_held_out_streamflow_out_of_finetuning(tmp_path):
    # the config's data_dir does not exist: --data-dir replaces it in the pretraining and in the finetuning runs
    pretrain = _config(tmp_path, 'pretrain', source='caravan_pretrain', data_dir=str(tmp_path / 'moved'))
    finetune = tmp_path / 'finetune.yml'
    YAML().dump(FINETUNE, finetune)
    output = tmp_path / 'pub'
    assert _pub('--model', f'ft={finetune}', '--pretrain', f'ft={pretrain}', '--basin-file', _basin_file(tmp_path),
                '--output-dir', output, '--folds', 2, '--data-dir', SAMPLE) == 0

    pretraining_run = next((output / 'runs' / 'ft' / 'pretrain').glob('ft_pretrain_*'))
    pretraining_scaler = load_scaler(pretraining_run)
    for fold in (1, 2):
        fold_dir = output / 'runs' / 'ft' / f'fold_{fold:02d}'
        run = next(fold_dir.glob(f'ft_fold_{fold:02d}_*'))
        cfg = Config(run / 'config.yml')
        assert cfg.is_finetuning and cfg.finetune_modules == FINETUNE['finetune_modules']
        assert (cfg.base_run_dir / 'model_epoch001.pt').resolve() == (pretraining_run / 'model_epoch001.pt').resolve()
        scaler = load_scaler(run)
        center, scale = scaler['xarray_feature_center'], scaler['xarray_feature_scale']
        pretraining_center = pretraining_scaler['xarray_feature_center']
        assert float(center['total_precipitation_sum']) == float(pretraining_center['total_precipitation_sum'])
        assert 'streamflow' not in pretraining_center

        assert cfg.data_dir == SAMPLE
        training_only = Config(pretrain)
        training_only.update_config({'data_dir': SAMPLE,
                                     'train_basin_file': output / 'basins' / f'fold_{fold:02d}' / 'train.txt',
                                     'train_dir': tmp_path / f'statistics_{fold}'})
        expected = get_dataset(training_only, is_train=True, period='train', scaler={}).scaler
        assert float(center['streamflow']) == pytest.approx(float(expected['xarray_feature_center']['streamflow']))
        assert float(scale['streamflow']) == pytest.approx(float(expected['xarray_feature_scale']['streamflow']))
    report = (output / 'report' / 'report.md').read_text()
    assert 'never the held-out basins\' streamflow' in report and f"Data: `{SAMPLE}`" in report


def test_pretraining_without_held_out_basins_is_planned_per_fold(tmp_path):
    pretrain = _config(tmp_path, 'pretrain', model='cudalstm')
    finetune = tmp_path / 'finetune.yml'
    finetune.write_text("finetune_modules:\n  - head\n")
    args = _parser().parse_args(['pub', '--model', f'ft={finetune}', '--pretrain', f'ft={pretrain}', '--basin-file',
                              str(_basin_file(tmp_path)), '--output-dir', str(tmp_path / 'pub'), '--folds', '2',
                              '--pretrain-exclude-held-out'])
    settings, models = pub_settings.settings_from(args)
    folds = pub_plan.load_or_make_folds(settings, args.output_dir)
    pretraining, final = pub_plan.plan(settings, models, folds, args.output_dir)
    assert [task.name for task in pretraining] == ['fold_01_pretrain', 'fold_02_pretrain']
    for task in final:
        held_out = set(folds.loc[folds['fold'] == int(task.name[-2:]), 'basin'])
        assert task.base.basin_files['train'] == task.basin_files['train']
        assert not held_out & set(task.base.basin_files['train'].read_text().split())
        assert task.base.held_out == task.held_out == held_out
    pub_settings.save_settings(settings, args.output_dir)
    assert "each fold's training basins only" in pub_report.write_report(args.output_dir).read_text()


@pytest.mark.parametrize('exclude', [False, True], ids=['shared by the folds', 'per fold'])
def test_models_with_the_same_pretraining_config_share_its_runs(tmp_path, exclude):
    pretrain = _config(tmp_path, 'pretrain', source='caravan_pretrain')
    copy = tmp_path / 'copy_of_pretrain.yml'
    copy.write_text(pretrain.read_text())
    other = _config(tmp_path, 'other_pretrain', source='caravan_pretrain', epochs=2)
    finetune = tmp_path / 'finetune.yml'
    finetune.write_text("finetune_modules:\n  - head\n")
    labels = {'a': pretrain, 'b': copy, 'c': other}
    arguments = [argument for label, config in labels.items()
                 for argument in ('--model', f'{label}={finetune}', '--pretrain', f'{label}={config}')]
    args = _parser().parse_args(['pub', *arguments, '--basin-file', str(_basin_file(tmp_path)), '--output-dir',
                                 str(tmp_path / 'pub'), '--folds', '2', '--seeds', '2',
                                 *(['--pretrain-exclude-held-out'] if exclude else [])])
    settings, models = pub_settings.settings_from(args)
    folds = pub_plan.load_or_make_folds(settings, args.output_dir)
    pretraining, final = pub_plan.plan(settings, models, folds, args.output_dir)
    per_seed_and_recipe = 2 * (2 if exclude else 1)  # seeds × (folds when held-out basins are excluded)
    assert len(pretraining) == 2 * per_seed_and_recipe
    assert {task.label for task in pretraining} == {'a', 'c'}
    bases = {(task.label, task.name): task.base for task in final}
    for name in {task.name for task in final}:
        assert bases['a', name] is bases['b', name] and bases['a', name] is not bases['c', name]
    assert len({bases['a', name].directory for name in {task.name for task in final}}) == per_seed_and_recipe

    # a later call with model 'b' alone finds the pretraining that 'a' finished
    for task in pretraining:
        task.directory.mkdir(parents=True, exist_ok=True)
        (task.directory / 'status.json').write_text(json.dumps(
            {'state': 'done', 'label': task.label, 'name': task.name, 'fingerprint': task.fingerprint}))
    only_b = {'b': models['b']}
    later, final = pub_plan.plan(settings, only_b, folds, args.output_dir)
    assert {task.directory for task in later} == {task.directory for task in pretraining if task.label == 'a'}
    assert all(task.base.label == 'a' and pub_runs.is_finished(task.base) for task in final)


def test_first_seed_makes_the_runs_of_those_offsets_that_more_seeds_would_make(tmp_path):
    pretrain = _config(tmp_path, 'pretrain', source='caravan_pretrain')
    finetune = tmp_path / 'finetune.yml'
    finetune.write_text("finetune_modules:\n  - head\n")
    common = ['pub', '--model', f'p={finetune}', '--pretrain', f'p={pretrain}', '--model',
              f'lstm={_config(tmp_path, "lstm", model="cudalstm")}', '--basin-file', str(_basin_file(tmp_path)),
              '--output-dir', str(tmp_path / 'pub'), '--folds', '2']

    def planned(*options: str) -> dict[tuple[str, str], tuple[Path, str]]:
        settings, models = pub_settings.settings_from(_parser().parse_args([*common, *options]))
        folds = pub_plan.load_or_make_folds(settings, tmp_path / 'pub')
        return {(task.label, task.name): (task.directory, task.fingerprint)
                for wave in pub_plan.plan(settings, models, folds, tmp_path / 'pub') for task in wave}

    all_three, last_two = planned('--seeds', '3'), planned('--seeds', '2', '--first-seed', '1')
    assert set(last_two) == {('p', 'seed_01_pretrain'), ('p', 'seed_02_pretrain')} | {
        (label, f'fold_{fold:02d}_seed_{seed:02d}') for label in ('p', 'lstm') for fold in (1, 2) for seed in (1, 2)}
    assert all(all_three[key] == value for key, value in last_two.items())
    seed_two = ('seed_02_pretrain', 'fold_01_seed_02', 'fold_02_seed_02')
    assert set(planned('--first-seed', '2')) == {key for key in last_two if key[1] in seed_two}

    with pytest.raises(ValueError, match='--first-seed -1 must be at least 0'):
        planned('--first-seed', '-1')
    unseeded = _config(tmp_path, 'unseeded', model='cudalstm', seed=None)
    with pytest.raises(ValueError, match=r"seed offsets \[1\].*sets none"):
        pub_settings.settings_from(_parser().parse_args(['pub', '--model', f'u={unseeded}', '--basin-file',
                                                     str(_basin_file(tmp_path)), '--output-dir', str(tmp_path / 'u'),
                                                     '--first-seed', '1']))


@pytest.mark.parametrize('changes, days, reason', [
    ({'model': 'cudalstm', 'predict_last_n': 10}, 0, "cudalstm, scored at each window's last day"),
    ({'predict_last_n': 10, 'stefaland_causal': False}, 9, 'bidirectional, strided: 10 days scored per window'),
    ({'predict_last_n': 10}, 0, 'causal'),
    ({'predict_last_n': 10, 'package_version': '1.13.0'}, 9,  # a run trained before causal became the default
     'bidirectional, strided: 10 days scored per window'),
    ({'predict_last_n': 10, 'stefaland_causal': False, 'stefaland_strided_evaluation': False}, 0,
     "bidirectional, scored at each window's last day"),
    ({'predict_last_n': 1, 'stefaland_causal': False}, 0, "bidirectional, scored at each window's last day"),
])
def test_the_report_says_how_many_later_days_of_forcing_a_scored_day_sees(tmp_path, changes, days, reason):
    assert pub_lookahead.future_view(_config(tmp_path, 'config', **changes)) == (days, reason)


def test_a_stefaland_config_is_fingerprinted_with_the_value_it_gets_for_a_key_whose_default_changed(tmp_path,
                                                                                                 monkeypatch):
    """Runs trained under an old default are not reused for a config that leaves the key unset."""
    unset, lstm = _config(tmp_path, 'unset'), _config(tmp_path, 'lstm', model='cudalstm')
    stated = _config(tmp_path, 'stated', stefaland_causal=True)
    now = {path: pub_plan._fingerprint(str(path), {}, None) for path in (unset, lstm, stated)}
    old_default = {'stefaland_causal': False}  # the value an unset key would get under another default
    monkeypatch.setattr(pub_plan, 'unset_changed_defaults',
                        lambda raw: {} if 'stefaland_causal' in raw else old_default)
    assert pub_plan._fingerprint(str(unset), {}, None) != now[unset]
    assert pub_plan._fingerprint(str(lstm), {}, None) == now[lstm]
    assert pub_plan._fingerprint(str(stated), {}, None) == now[stated]


def test_random_folds_are_reproducible_balanced_and_seeded():
    basins = [f'b{i}' for i in range(23)]
    folds = pub_folds.random_folds(basins, k=5, seed=7)
    assert folds.equals(pub_folds.random_folds(basins, k=5, seed=7))
    assert not folds['fold'].equals(pub_folds.random_folds(basins, k=5, seed=8)['fold'])
    assert list(folds['basin']) == basins
    assert sorted(folds['fold'].value_counts()) == [4, 4, 5, 5, 5]
    with pytest.raises(ValueError, match='--folds 1'):
        pub_folds.random_folds(basins, k=1, seed=0)


def test_regions_group_the_sample_by_huc_02_into_the_papers_seven_folds(tmp_path):
    pretrain = _config(tmp_path, 'pretrain', source='caravan_pretrain')
    finetune = tmp_path / 'finetune.yml'
    YAML().dump(FINETUNE, finetune)
    basins = (SAMPLE / 'basins.txt').read_text().split()
    args = _parser().parse_args(['pub', '--model', f'ft={finetune}', '--pretrain', f'ft={pretrain}', '--basin-file',
                                    str(_basin_file(tmp_path, basins)), '--output-dir', str(tmp_path / 'pub'),
                                    '--regions'])
    settings, _ = pub_settings.settings_from(args)
    folds = pub_plan.load_or_make_folds(settings, args.output_dir).set_index('basin')
    huc = pd.read_csv(SAMPLE / 'attributes' / 'camels' / 'attributes_camelsus_camels.csv',
                      index_col='gauge_id')['huc_02']
    for fold, regions in enumerate(pub_folds.PAPER_HUC02_GROUPS, start=1):
        members = huc[huc.astype(str).isin(regions)].index
        assert set(folds.index[folds['fold'] == fold]) == set(members)
        assert set(folds.loc[members, 'group']) == {f"huc_02={','.join(regions)}"}
    saved = (args.output_dir / 'folds.csv').read_text()
    assert pub_plan.load_or_make_folds(pub_settings.settings_from(args)[0], args.output_dir).equals(folds.reset_index())
    assert (args.output_dir / 'folds.csv').read_text() == saved


def test_data_dir_option_replaces_the_configs_data_dir_in_folds_runs_and_fingerprints(tmp_path):
    moved = _config(tmp_path, 'moved', data_dir=str(tmp_path / 'not_here'))
    basins = _basin_file(tmp_path, (SAMPLE / 'basins.txt').read_text().split())

    def planned(output: str, *data_dir: str) -> tuple[dict, list]:
        args = _parser().parse_args(['pub', '--model', f'm={moved}', '--basin-file', str(basins), '--output-dir',
                                     str(tmp_path / output), '--regions', *data_dir])
        settings, models = pub_settings.settings_from(args)
        folds = pub_plan.load_or_make_folds(settings, args.output_dir)
        return settings, pub_plan.plan(settings, models, folds, args.output_dir)[1]

    with pytest.raises(FileNotFoundError, match=f"Model 'm': data_dir {tmp_path / 'not_here'} is not a folder"):
        planned('without')
    settings, tasks = planned('with', '--data-dir', str(SAMPLE))
    assert len(tasks) == 7 and {task.data_dir for task in tasks} == {SAMPLE}
    assert pub_runs._stage_config(tasks[0]).data_dir == SAMPLE
    shutil.copytree(SAMPLE, tmp_path / 'elsewhere')
    _, elsewhere = planned('with', '--data-dir', str(tmp_path / 'elsewhere'))
    assert [task.fingerprint for task in elsewhere] != [task.fingerprint for task in tasks]
    with pytest.raises(FileNotFoundError, match='--data-dir'):
        planned('with', '--data-dir', str(tmp_path / 'none'))


def test_grouping_by_any_attribute_and_its_errors():
    values = pd.Series([1.0, 3, '3', 2], index=['a', 'b', 'c', 'd'])
    folds = pub_folds.group_folds(values, 'zone')
    assert list(folds['fold']) == [1, 3, 3, 2] and folds.loc[1, 'group'] == 'zone=3'
    folds = pub_folds.group_folds(values, 'zone', [['3'], ['1', '2']])
    assert list(folds['fold']) == [2, 1, 1, 2]
    with pytest.raises(ValueError, match=r"values \['2'\] that are in no group"):
        pub_folds.group_folds(values, 'zone', [['1', '3']])
    with pytest.raises(ValueError, match='more than one group'):
        pub_folds.group_folds(values, 'zone', [['1', '3'], ['3', '2']])
    with pytest.raises(ValueError, match='missing for basins'):
        pub_folds.group_folds(pd.Series([1, None], index=['a', 'b']), 'zone')


@pytest.mark.parametrize('changes,message', [
    ({'model': 'cudalstm', 'use_basin_id_encoding': True}, 'use_basin_id_encoding is on'),
    ({'static_attributes': ['p_mean', 'q_mean', 'baseflow_index']}, r"\['q_mean', 'baseflow_index'\] look computed"),
    ({'static_attributes': ['area', 'runoff_ratio']}, r"\['runoff_ratio'\] look computed"),
    ({'dynamic_inputs': ['total_precipitation_sum', 'streamflow']}, r"\['streamflow'\] are also inputs"),
    ({'base_run_dir': '/somewhere/pretrained'}, 'starts from fixed weights'),
    ({'stefaland_stage': 'finetune', 'finetune_modules': ['head']}, 'is a StefaLand finetune stage'),
])
def test_leakage_guards_stop_pub_before_anything_runs(tmp_path, changes, message):
    config = _config(tmp_path, 'model', **changes)
    output = tmp_path / 'pub'
    with pytest.raises(ValueError, match=message):
        _pub('--model', f'm={config}', '--basin-file', _basin_file(tmp_path), '--output-dir', output, '--folds', 2)
    assert not (output / 'runs').exists()


def test_a_finetuning_config_must_name_the_parts_it_trains(tmp_path):
    pretrain = _config(tmp_path, 'pretrain', source='caravan_pretrain')
    finetune = tmp_path / 'finetune.yml'
    YAML().dump({key: value for key, value in FINETUNE.items() if key != 'finetune_modules'}, finetune)
    with pytest.raises(ValueError, match='finetune_modules'):
        _pub('--model', f'ft={finetune}', '--pretrain', f'ft={pretrain}', '--basin-file', _basin_file(tmp_path),
             '--output-dir', tmp_path / 'pub', '--folds', 2)


@pytest.mark.parametrize('source,changes', [('caravan_sample', {'model': 'cudalstm'}),
                                            ('caravan_pretrain', {'predict_last_n': 5})])
def test_pretraining_that_reads_streamflow_may_not_see_held_out_basins(tmp_path, source, changes):
    pretrain = _config(tmp_path, 'pretrain', source=source, **changes)
    finetune = tmp_path / 'finetune.yml'
    finetune.write_text("finetune_modules:\n  - head\n")
    with pytest.raises(ValueError, match='--pretrain-exclude-held-out'):
        _pub('--model', f'ft={finetune}', '--pretrain', f'ft={pretrain}', '--basin-file', _basin_file(tmp_path),
             '--output-dir', tmp_path / 'pub', '--folds', 2)


def test_attribute_guard_flags_exactly_the_streamflow_signatures_of_real_attribute_files():
    camels = ROOT / 'tests' / 'data' / 'camels_us_nh' / 'camels_attributes_v2.0'
    names = {path.stem: path.read_text().splitlines()[0].split(';')[1:] for path in camels.glob('camels_*.txt')}
    caravan = [name for path in (SAMPLE / 'attributes' / 'camels').glob('*.csv')
               for name in path.read_text().splitlines()[0].split(',')[1:]]
    assert len(names['camels_hydro']) == 13
    assert pub_leakage.target_derived(names['camels_hydro']) == names['camels_hydro']
    others = [name for stem, columns in names.items() if stem != 'camels_hydro' for name in columns] + caravan
    assert len(others) > 250 and pub_leakage.target_derived(others) == []


def test_attribute_guard_names_and_override(tmp_path):
    assert pub_leakage.target_derived(['q5', 'Q95', 'slope_fdc', 'high_q_freq', 'hfd_mean', 'stream_elas']) == \
        ['q5', 'Q95', 'slope_fdc', 'high_q_freq', 'hfd_mean', 'stream_elas']
    assert pub_leakage.target_derived(['p_mean', 'high_prec_freq', 'frac_snow', 'slope_mean', 'run_mm_syr',
                                       'seasonality', 'sand_frac', 'aridity']) == []
    cfg = Config(_config(tmp_path, 'model', static_attributes=['area', 'q_mean']))
    pub_leakage.check_config(cfg, 'm', allowed_attributes=['q_mean'])
    with pytest.raises(ValueError, match='q_mean'):
        pub_leakage.check_config(cfg, 'm')


def test_held_out_basin_in_a_training_basin_file_is_refused(tmp_path):
    train = tmp_path / 'train.txt'
    train.write_text('camels_01022500\ncamels_01632900\n')
    cfg = Config(_config(tmp_path, 'model', train_basin_file=str(train), validation_basin_file=str(train)))
    pub_leakage.check_training_basins(cfg, held_out={'camels_02177000'}, label='m')
    with pytest.raises(ValueError, match=r"train_basin_file .* lists held-out basins \['camels_01632900'\]"):
        pub_leakage.check_training_basins(cfg, held_out={'camels_01632900'}, label='m')


def _parser() -> argparse.ArgumentParser:
    """A parser with the pub sub-command, for tests that plan without running."""
    parser = argparse.ArgumentParser()
    pub.add_arguments(parser.add_subparsers(dest='command').add_parser('pub'))
    return parser


def test_report_shows_configs_below_the_working_directory_relative_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert pub_markdown.shown(str(ROOT / 'benchmarks' / 'ungauged' / 'lstm.yml')) == 'benchmarks/ungauged/lstm.yml'
    assert pub_markdown.shown(str(tmp_path / 'lstm.yml')) == str(tmp_path / 'lstm.yml')


def test_the_console_script_reports_a_wrong_input_in_one_line(tmp_path, monkeypatch, capsys):
    lstm = _config(tmp_path, 'lstm', model='cudalstm')
    common = ['nh-stefaland', 'pub', '--model', f'lstm={lstm}', '--basin-file', str(_basin_file(tmp_path)),
              '--output-dir', str(tmp_path / 'pub')]
    for wrong, message in ((['--data-dir', str(tmp_path / 'none')], 'no such folder'),
                           (['--folds', '0'], '--folds 0 must be between 2 and the number of basins (6)')):
        monkeypatch.setattr('sys.argv', common + wrong)
        assert cli.console() == 2
        error = capsys.readouterr().err
        assert error.startswith('nh-stefaland: error: ') and message in error and error.count('\n') == 1


def test_seeds_best_epoch_and_scoring_on_the_days_every_model_predicts(tmp_path):
    # the configs name a GPU; --devices puts each of the two workers on the CPU instead
    period = {'predict_last_n': 10, 'epochs': 2, 'validate_every': None, 'device': 'cuda:0'}
    stefaland = _config(tmp_path, 'stefaland', **period)
    lstm = _config(tmp_path, 'lstm', model='cudalstm', **period)
    output = tmp_path / 'pub'
    common = ['--model', f'stefaland={stefaland}', '--model', f'lstm={lstm}', '--basin-file', _basin_file(tmp_path),
              '--output-dir', output, '--folds', 2, '--seeds', 2, '--devices', 'cpu,cpu']
    assert _pub(*common) == 0
    assert {path.name for path in (output / 'runs' / 'lstm').iterdir()} == {'fold_01', 'fold_01_seed_01', 'fold_02',
                                                                           'fold_02_seed_01'}
    configs = [Config(next((output / 'runs' / 'lstm' / name).glob('lstm_*/config.yml')))
               for name in ('fold_01', 'fold_01_seed_01')]
    assert [cfg.seed for cfg in configs] == [1, 2] and {cfg.device for cfg in configs} == {'cpu'}

    per_basin = pd.read_csv(output / 'report' / 'per_basin.csv', dtype={'basin': str, 'seed': str})
    # NH's tester scores the LSTM from test_start_date + 9 days, the strided tester StefaLand from test_start_date:
    # both are scored on the 50 days from 2001-01-10 to 2001-02-28
    assert (per_basin['days'] == 50).all()
    # StefaLand's NSE in the report is NH's NSE of its test_results.p over those 50 days, not NH's over all of its days
    test_dir = next((output / 'runs' / 'stefaland' / 'fold_01').glob('*/test/model_epoch002'))
    nh_metrics = pd.read_csv(test_dir / 'test_metrics.csv', index_col=0, dtype={0: str})['NSE']
    results = pickle.loads((test_dir / 'test_results.p').read_bytes())
    ours = per_basin[(per_basin['model'] == 'stefaland') & (per_basin['seed'] == '0') & (per_basin['fold'] == 1)]
    for basin, nse in ours.set_index('basin')['NSE'].items():
        days = results[basin]['1D']['xr'].isel(time_step=-1).sel(date=slice('2001-01-10', '2001-02-28'))
        expected = calculate_metrics(days['streamflow_obs'], days['streamflow_sim'], metrics=['NSE'], resolution='1D')
        assert nse == pytest.approx(expected['NSE'], rel=1e-5) and nse != pytest.approx(nh_metrics[basin], rel=1e-3)
    assert set(per_basin['model']) == {'stefaland', 'stefaland_ensemble', 'lstm', 'lstm_ensemble'}
    assert set(per_basin.loc[per_basin['model'] == 'lstm', 'seed']) == {'0', '1'}
    seed_table = pd.read_csv(output / 'report' / 'seeds.csv', index_col='model')
    assert list(seed_table.index) == ['stefaland', 'lstm'] and (seed_table['spread'] >= 0).all()
    markdown = (output / 'report' / 'report.md').read_text()
    assert '## Seeds' in markdown and 'on the days that all models predict' in markdown
    assert "trained with 2 seeds (the config's `seed` + 0, 1)" in markdown

    runs = _run_folders(output)
    assert _pub(*common, '--epoch', 'best', '--epoch-basins', 3) == 0
    assert _run_folders(output) == runs  # the trained runs are kept; only the epoch is chosen
    for fold in (1, 2):
        chosen = (output / 'basins' / f'fold_{fold:02d}' / 'epoch_choice.txt').read_text().split()
        train = (output / 'basins' / f'fold_{fold:02d}' / 'train.txt').read_text().split()
        assert len(chosen) == 3 and set(chosen) <= set(train)
    choice = json.loads((output / 'runs' / 'lstm' / 'fold_02_seed_01' / 'epoch.json').read_text())
    assert choice['epoch'] in (1, 2) and set(choice['validation_median_nse']) == {'1', '2'}
    markdown = (output / 'report' / 'report.md').read_text()
    assert '## Chosen epochs' in markdown and 'the epoch with the best median NSE' in markdown


def test_paired_interval_resamples_folds_not_basins():
    # A beats B by 1 in three folds and loses by 1 in the fourth: 75 % of basins, but one fold in four goes the
    # other way, and basins of a fold share one model: the interval must reach below zero
    rows = []
    for fold, difference in enumerate([1.0, 1.0, 1.0, -1.0], start=1):
        for basin in range(40):
            name = f'b{fold}_{basin}'
            base = 0.01 * basin
            for model, value in (('a', base + difference), ('b', base)):
                rows.append({'basin': name, 'fold': fold, 'group': 'random', 'model': model, 'seed': '0',
                             'days': 100, **{metric: value for metric in REPORT_METRICS}})
    paired = pub_stats.compare_pairs(pd.DataFrame(rows))
    nse = paired[paired['metric'] == 'NSE'].iloc[0]
    assert nse['median_difference'] == pytest.approx(1.0) and nse['folds'] == 4
    assert nse['ci_low'] < 0 < nse['ci_high']


def test_a_seed_ensemble_is_the_mean_of_its_seeds_predictions(tmp_path):
    dates = pd.date_range('2001-01-01', periods=20)
    observed = np.sin(np.arange(20.0)) + 2.0
    runs = []
    for seed, noise in enumerate((0.3, -0.3)):
        frame = xarray.Dataset({'q_obs': (('date', 'time_step'), observed[:, None]),
                                'q_sim': (('date', 'time_step'), (observed + noise)[:, None])},
                               coords={'date': dates, 'time_step': [0]})
        path = tmp_path / f'results_{seed}.p'
        path.write_bytes(pickle.dumps({'basin_a': {'1D': {'xr': frame}}}))
        runs.append(pub_scoring.FoldRun('m', fold=1, seed=seed, results_file=path, target='q', clip_to_zero=False))
    folds = pd.DataFrame({'basin': ['basin_a'], 'fold': [1], 'group': ['random']})
    scored = pub_scoring.score_folds(runs, folds).set_index('model')
    assert scored.loc['m_ensemble', 'NSE'] == pytest.approx(1.0)
    assert (scored.loc['m', 'NSE'] < 1.0).all()


def _scored_output(directory: Path, data_dir: Path, basins: list[str], models: tuple[str, ...] = ('a', 'b'),
                   n_folds: int = 2, unobserved: tuple[str, ...] = ()) -> Path:
    """A pub output directory with finished runs of ``models`` whose test_results.p hold synthetic daily flows
    (1999-10-01 to 2001-09-30; model k's error grows with k), made without training; the ``unobserved`` basins
    have predictions but no observation (as NH writes them for a basin without streamflow)."""
    output = directory / 'pub'
    config = _config(directory, 'model', data_dir=str(data_dir))
    folds = pub_folds.random_folds(basins, n_folds, seed=0)
    output.mkdir()
    folds.to_csv(output / 'folds.csv', index=False)
    settings = {'protocol': 'random', 'folds': n_folds, 'seed': 0, 'group_by': None, 'groups': None,
                'basin_file': 'basins.txt', 'basins': basins, 'data_dir': None, 'pretrain_held_out': 'included',
                'allow_attributes': [], 'seeds': 1, 'epoch': 'last', 'epoch_basins': 50,
                'models': {model: {'config': str(config), 'pretrain': None} for model in models}}
    (output / 'pub.json').write_text(json.dumps(settings))
    dates = pd.date_range('1999-10-01', '2001-09-30')
    rng = np.random.default_rng(0)
    flows = {basin: 2 + np.sin(np.arange(len(dates)) * 2 * np.pi / 365) + rng.gamma(0.5, 1.0, len(dates))
             for basin in basins}
    for (index, model), fold in itertools.product(enumerate(models), range(1, n_folds + 1)):
        run = output / 'runs' / model / f'fold_{fold:02d}'
        (run / 'run' / 'test' / 'model_epoch001').mkdir(parents=True)
        (run / 'run' / 'config.yml').write_text('clip_targets_to_zero: []\nmodel: cudalstm\n')
        results = {}
        for basin in folds.loc[folds['fold'] == fold, 'basin']:
            simulated = flows[basin] + rng.normal(0, 0.3 * (index + 1) * rng.uniform(0.5, 1.5), len(dates))
            observed = np.full(len(dates), np.nan) if basin in unobserved else flows[basin]
            results[basin] = {'1D': {'xr': xarray.Dataset(
                {'streamflow_obs': (('date', 'time_step'), observed[:, None]),
                 'streamflow_sim': (('date', 'time_step'), simulated[:, None])},
                coords={'date': dates, 'time_step': [0]})}}
        (run / 'run' / 'test' / 'model_epoch001' / 'test_results.p').write_bytes(pickle.dumps(results))
        (run / 'status.json').write_text(json.dumps(
            {'state': 'done', 'run_dir': 'run', 'target': 'streamflow', 'log': 'pub.log', 'seconds': 1.0,
             'metrics_file': 'run/test/model_epoch001/test_metrics.csv', 'name': run.name, 'fingerprint': ''}))
    return output


def test_basins_without_observations_are_counted_and_named_and_score_no_day(tmp_path):
    basins = BASINS[:4]
    output = _scored_output(tmp_path, SAMPLE, basins, unobserved=(basins[1], basins[3]))
    markdown = pub_report.write_report(output).read_text()
    per_basin = pd.read_csv(output / 'report' / 'per_basin.csv', dtype={'basin': str}).set_index('basin')
    assert (per_basin.loc[[basins[1], basins[3]], 'days'] == 0).all()
    assert per_basin.loc[[basins[1], basins[3]], 'NSE'].isna().all()
    assert (per_basin.loc[[basins[0], basins[2]], 'days'] == 731).all()
    assert (f"2 of the 4 held-out basins have no observation on the days scored, so no metric (they are not in the "
            f"counts above): {basins[1]}, {basins[3]}.") in markdown
    assert 'median 731 days per basin (731–731)' in markdown
    summary = pd.read_csv(output / 'report' / 'summary.csv')
    assert (summary.loc[summary['metric'] == 'NSE', 'n'] == 2).all()


def test_a_basin_listed_twice_is_refused_before_any_fold_is_made(tmp_path):
    lstm = _config(tmp_path, 'lstm', model='cudalstm')
    output = tmp_path / 'pub'
    basin_file = _basin_file(tmp_path, [*BASINS, BASINS[1], BASINS[0]])
    args = _parser().parse_args(['pub', '--model', f'lstm={lstm}', '--basin-file', str(basin_file), '--output-dir',
                                 str(output), '--folds', '2'])
    with pytest.raises(ValueError, match=rf"lists 2 basin\(s\) more than once \({BASINS[0]}, {BASINS[1]}\)"):
        pub_settings.settings_from(args)
    assert not output.exists()


def test_report_maps_and_hydrographs_of_each_pair(tmp_path):
    basins = (SAMPLE / 'basins.txt').read_text().split()
    output = _scored_output(tmp_path, SAMPLE, basins, models=('a', 'b', 'c'))
    markdown = pub_report.write_report(output).read_text()
    pairs = [('a', 'b'), ('a', 'c'), ('b', 'c')]
    names = ['nse_map.png', *(f'{kind}_{a}_vs_{b}.png' for a, b in pairs for kind in ('nse_difference',
                                                                                        'hydrographs'))]
    for name in names:
        assert (output / 'report' / name).read_bytes()[:4] == b'\x89PNG'
        assert f']({name})' in markdown and f'`{name}`' in markdown
    assert markdown.index('## Maps') < markdown.index('## Hydrographs')
    shutil.rmtree(output / 'report')
    markdown = pub_report.write_report(output, figures_for=['c']).read_text()
    assert 'nse_difference_a_vs_c.png' in markdown and 'hydrographs_b_vs_c.png' in markdown
    assert 'a_vs_b' not in markdown and not (output / 'report' / 'hydrographs_a_vs_b.png').exists()
    with pytest.raises(ValueError, match=r"--figures-for \['d'\]"):
        pub_report.write_report(output, figures_for=['d'])

    differences = pd.Series([0.3, -0.2, 0.1, 0.0, 0.5], index=list('vwxyz'))
    assert pub_hydrographs.percentile_basins(differences) == [(10, 'w'), (50, 'x'), (90, 'z')]
    assert pub_hydrographs.percentile_basins(differences[:1]) == [(10, 'v')]
    days = pd.date_range('2000-08-01', '2001-12-31')
    observed = pd.Series(1.0, index=days).where(days < '2001-11-01')
    assert pub_hydrographs.hydrological_year(days, observed) == 2001
    assert pub_maps.marker_size(30) > pub_maps.marker_size(3000) >= 4


def test_two_pub_processes_on_one_output_directory_share_folds_settings_and_report(tmp_path):
    # a job array on one output directory: fold 1 with model a, and at the same time fold 2 with models a and b
    small = _config(tmp_path, 'small', model='cudalstm', hidden_size=4)
    other = _config(tmp_path, 'other', model='cudalstm', hidden_size=4, seed=2)
    output = tmp_path / 'pub'
    common = ['pub', '--basin-file', str(_basin_file(tmp_path)), '--output-dir', str(output), '--folds', '2']
    script = str(Path(sys.executable).with_name('nh-stefaland'))
    jobs = [subprocess.Popen([script, *common, *models, '--fold', fold], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
            for models, fold in ((('--model', f'a={small}'), '1'),
                                 (('--model', f'a={small}', '--model', f'b={other}'), '2'))]
    for job in jobs:
        _, error = job.communicate(timeout=900)
        assert job.returncode == 0, error

    assert set(json.loads((output / 'pub.json').read_text())['models']) == {'a', 'b'}
    folds = pd.read_csv(output / 'folds.csv', dtype={'basin': str})
    assert sorted(folds['basin']) == sorted(BASINS) and set(folds['fold']) == {1, 2}
    for fold in (1, 2):
        held_out = (output / 'basins' / f'fold_{fold:02d}' / 'test.txt').read_text().split()
        train = (output / 'basins' / f'fold_{fold:02d}' / 'train.txt').read_text().split()
        assert held_out == list(folds.loc[folds['fold'] == fold, 'basin'])
        assert sorted(held_out + train) == sorted(BASINS)
    statuses = [json.loads(path.read_text()) for path in output.glob('runs/*/*/status.json')]
    assert sorted((s['label'], s['name'], s['state']) for s in statuses) == [
        ('a', 'fold_01', 'done'), ('a', 'fold_02', 'done'), ('b', 'fold_02', 'done')]
    assert not list(output.rglob('*.tmp'))

    assert _pub('--report-only', output) == 0
    per_basin = pd.read_csv(output / 'report' / 'per_basin.csv', dtype={'basin': str})
    assert set(zip(per_basin['model'], per_basin['fold'])) == {('a', 1), ('a', 2), ('b', 2)}
    markdown = (output / 'report' / 'report.md').read_text()
    assert '| a | 2/2 | 6 |' in markdown and '| b | 1/2 | 3 |' in markdown

    # a run that another process finished while this one waited for its lock is reused, not trained again
    directory = output / 'runs' / 'a' / 'fold_01'
    status = json.loads((directory / 'status.json').read_text())
    task = pub_runs.Task('a', 'fold_01', directory, small, {}, frozenset(), status['fingerprint'])
    runs = _run_folders(output)
    assert pub_runs.run_task(task) == pub_report.read_status(directory) and _run_folders(output) == runs


def test_report_without_gauge_coordinates_has_a_note_instead_of_maps(tmp_path):
    data_dir = tmp_path / 'data'
    shutil.copytree(SAMPLE / 'attributes', data_dir / 'attributes')
    other = data_dir / 'attributes' / 'camels' / 'attributes_other_camels.csv'
    pd.read_csv(other).drop(columns=['gauge_lat', 'gauge_lon']).to_csv(other, index=False)
    output = _scored_output(tmp_path, data_dir, BASINS)
    markdown = pub_report.write_report(output).read_text()
    assert f"No maps: the attributes of dataset `caravan` in `{data_dir}` have no gauge_lat, gauge_lon." in markdown
    assert not (output / 'report' / 'nse_map.png').exists()
    assert '](hydrographs_a_vs_b.png)' in markdown


@pytest.mark.parametrize('jobs', [1, 2])
def test_a_finetuning_run_starts_once_its_pretraining_is_done_not_after_every_other_run(tmp_path, monkeypatch, jobs):
    """Tasks are faked (a status, in the order they run); two worker threads stand in for the worker processes. With
    two workers the long run waits until the finetuning run has ended: the scheduler must start that one on the worker
    its pretraining freed, not after the long run (which would then wait in vain and record it)."""
    events = []
    fold_01_ended = threading.Event()

    def fake_run(task: pub_runs.Task) -> dict:
        events.append(('start', task.name))
        if task.name == 'long' and jobs == 2 and not fold_01_ended.wait(timeout=60):
            events.append(('gave up waiting', task.name))
        state = 'failed' if task.name == 'broken_pretrain' else 'done'
        status = pub_runs.write_status(task, {'state': state, 'error': 'x'}, task.directory / 'pub.log')
        events.append(('end', task.name))
        if task.name == 'fold_01':
            fold_01_ended.set()
        return status

    def task(name: str, base: pub_runs.Task | None = None) -> pub_runs.Task:
        return pub_runs.Task('m', name, tmp_path / name, tmp_path / 'c.yml', {}, frozenset(), name, base=base)

    monkeypatch.setattr(pub_runs, 'run_task', fake_run)
    monkeypatch.setattr(pub_workers, 'pool', lambda jobs, devices: (
        contextlib.nullcontext() if jobs == 1 else concurrent.futures.ThreadPoolExecutor(jobs)))
    pretraining, broken = task('pretrain'), task('broken_pretrain')
    tasks = [pretraining, broken, task('long'), task('fold_01', pretraining), task('fold_02', broken)]
    with tqdm.tqdm(total=len(tasks), disable=True) as progress:
        statuses = pub_schedule.run_tasks(tasks, jobs=jobs, progress=progress)

    assert {path.name: status['state'] for path, status in statuses.items()} == {
        'pretrain': 'done', 'broken_pretrain': 'failed', 'long': 'done', 'fold_01': 'done', 'fold_02': 'failed'}
    assert 'its pretraining broken_pretrain failed' in statuses[tmp_path / 'fold_02']['error']
    assert ('start', 'fold_02') not in events  # never run
    assert events.index(('start', 'fold_01')) > events.index(('end', 'pretrain'))
    if jobs == 2:  # the finetuning run went alongside the long run, on the worker its pretraining freed
        assert ('gave up waiting', 'long') not in events
        assert events.index(('end', 'fold_01')) < events.index(('end', 'long'))
        running = peak = 0
        for kind, _ in events:
            running += 1 if kind == 'start' else -1 if kind == 'end' else 0
            peak = max(peak, running)
        assert peak <= 2  # never more runs at a time than workers


def test_devices_give_one_worker_each_and_are_checked():
    assert pub_workers.parse_devices(None, None) == ([], 1)
    assert pub_workers.parse_devices('cpu,cpu', None) == (['cpu', 'cpu'], 2)
    assert pub_workers.parse_devices('cpu,cpu', 1) == (['cpu', 'cpu'], 1)
    with pytest.raises(ValueError, match="--jobs 3 exceeds the 2 --devices"):
        pub_workers.parse_devices('cpu,cpu', 3)
    with pytest.raises(ValueError, match="'gpu0' is not a device"):
        pub_workers.parse_devices('gpu0', None)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda:0 is not available"):
            pub_workers.parse_devices('cuda:0', None)


def test_train_fraction_trains_every_model_on_the_same_share_of_the_training_basins(tmp_path):
    pretrain = _config(tmp_path, 'pretrain', source='caravan_pretrain')
    finetune = tmp_path / 'finetune.yml'
    YAML().dump(FINETUNE, finetune)
    lstm = _config(tmp_path, 'lstm', model='cudalstm')
    basins = (SAMPLE / 'basins.txt').read_text().split()
    output = tmp_path / 'pub'
    command = ['pub', '--model', f'ft={finetune}', '--pretrain', f'ft={pretrain}', '--model', f'lstm={lstm}',
               '--basin-file', str(_basin_file(tmp_path, basins)), '--output-dir', str(output), '--folds', '3']
    args = _parser().parse_args([*command, '--train-fraction', '0.25'])
    settings, models = pub_settings.settings_from(args)
    folds = pub_plan.load_or_make_folds(settings, output)
    pretraining, final = pub_plan.plan(settings, models, folds, output)
    assert pretraining[0].basin_files['train'].read_text().split() == basins  # pretraining sees every basin
    for fold in (1, 2, 3):
        tasks = [task for task in final if task.name == f'fold_{fold:02d}']
        train = (output / 'basins' / f'fold_{fold:02d}' / 'train.txt').read_text().split()
        gauged = {tuple(task.basin_files[part].read_text().split())
                  for task in tasks for part in ('train', 'validation')}
        assert len(gauged) == 1  # the same basins for both models, in training and validation
        gauged = set(gauged.pop())
        assert len(gauged) == round(0.25 * len(train)) and gauged <= set(train)
        assert not gauged & tasks[0].held_out
        assert tasks[0].basin_files['test'].read_text().split() == sorted(tasks[0].held_out, key=basins.index)
    pub_settings.save_settings(settings, output)
    assert 'seeded 25% of its training basins' in pub_report.write_report(output).read_text()
    with pytest.raises(ValueError, match=r"other \['train_fraction'\]"):
        pub_settings.settings_from(_parser().parse_args([*command, '--train-fraction', '0.5']))
    with pytest.raises(ValueError, match=r"--train-fraction 0.0 must be in \(0, 1\]"):
        pub_settings.settings_from(_parser().parse_args([*command, '--train-fraction', '0']))
