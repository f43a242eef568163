"""The causal study's scripts on the shipped sample: arms, the re-evaluation of trained runs, and the summary."""
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML

from neuralhydrology.utils.config import Config

from nh_stefaland.tools import cli

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / 'examples' / 'data' / 'caravan_camels_sample'
BASINS = ['camels_01022500', 'camels_01632900', 'camels_02177000', 'camels_03173000']


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f'causal_{name}', ROOT / 'benchmarks' / 'causal' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


study, summarise, decomposition = _module('study'), _module('summarise'), _module('decomposition')


@pytest.mark.parametrize('arm', sorted(study.ARMS))
def test_an_arm_is_its_benchmark_config_with_its_changes_only(arm, tmp_path):
    config, changes, updates = study.ARMS[arm]
    budget = study.PRETRAINING.BUDGETS[updates]
    written = study.PRETRAINING.write_config(study.PRETRAINING.BENCHMARK / config, {**changes, **budget},
                                             tmp_path / 'a.yml')
    original, copy = (YAML(typ='safe').load(path) for path in (study.PRETRAINING.BENCHMARK / config, written))
    assert copy == {**original, **changes, **budget}
    Config(written)  # NH accepts every key


@pytest.mark.parametrize('arm', sorted(study.FINETUNED))
def test_a_finetuned_arm_takes_its_direction_from_its_pretraining(arm):
    pretraining, changes, _ = study.FINETUNED[arm]
    finetuning = YAML(typ='safe').load(study.PRETRAINING.BENCHMARK / 'stefaland_finetune.yml')
    assert 'stefaland_causal' not in {**finetuning, **changes}  # inherited from the encoder: never a mismatch
    assert pretraining['stefaland_causal'] == arm.endswith('_causal')


def _config(directory: Path, name: str, **changes) -> Path:
    yaml = YAML()
    cfg = yaml.load(ROOT / 'tests' / 'configs' / 'caravan_sample.yml')
    cfg.update({'data_dir': str(SAMPLE), 'predict_last_n': 10, 'test_start_date': '01/01/2001',
                'test_end_date': '31/03/2001', **changes})
    yaml.dump(cfg, directory / f'{name}.yml')
    return directory / f'{name}.yml'


def _daily(directory: Path) -> pd.DataFrame:
    """Simulations of a run folder's test results, one column per basin."""
    results, = directory.glob('*/test/model_epoch*/test_results.p')
    with results.open('rb') as stream:
        loaded = pickle.load(stream)
    return pd.DataFrame({basin: pd.Series(value['1D']['xr']['streamflow_sim'].values[:, -1],
                                          index=pd.DatetimeIndex(value['1D']['xr']['date'].values))
                         for basin, value in loaded.items()})


def test_rescored_runs_are_the_trained_runs_scored_at_each_window_end_and_the_summary_reads_them(tmp_path):
    basin_file = tmp_path / 'basins.txt'
    basin_file.write_text('\n'.join(BASINS) + '\n')
    output = tmp_path / 'pub'
    models = ['--model', f"lstm={_config(tmp_path, 'lstm', model='cudalstm')}",
              '--model', f"scratch={_config(tmp_path, 'scratch', stefaland_causal=False)}",
              '--model', f"causal={_config(tmp_path, 'causal', stefaland_causal=True)}"]
    assert cli.main(['pub', *models, '--basin-file', str(basin_file), '--output-dir', str(output), '--folds', '2',
                     '--fold', '1']) == 0
    source, changes = study.RESCORED['scratch_last_day']
    study.rescore(output, source, 'scratch_last_day', changes, fold=1)
    rescored_dir = output / 'runs' / 'scratch_last_day' / 'fold_01'
    first = (rescored_dir / 'status.json').read_text()
    study.rescore(output, source, 'scratch_last_day', changes, fold=1)  # done: kept
    assert (rescored_dir / 'status.json').read_text() == first

    strided, last_day = _daily(output / 'runs' / 'scratch' / 'fold_01'), _daily(rescored_dir)
    ends = strided.index[9::10]  # the strided windows end every 10 days from the period's start
    assert np.allclose(strided.loc[ends], last_day.loc[ends], rtol=1e-5, atol=1e-6)  # the same windows
    assert not np.allclose(strided.loc[strided.index[::10]], last_day.loc[strided.index[::10]])

    assert cli.main(['pub', '--report-only', str(output)]) == 0
    report = (output / 'report' / 'report.md').read_text()
    assert "**scratch**" in report and "later days: 9 (bidirectional, strided: 10 days scored per window)" in report
    assert "**scratch_last_day**: runs in `runs/scratch_last_day/` that pub did not plan" in report
    assert "later days: 0 (bidirectional, scored at each window's last day)" in report
    arms = summarise.summarise(output, tmp_path / 'results')
    assert list(arms['arm']) == ['lstm', 'scratch', 'scratch_last_day', 'causal']
    assert list(arms['later_days']) == [0, 9, 0, 0]
    assert (arms['low'] <= arms['median_nse']).all() and (arms['median_nse'] <= arms['high']).all()
    table = (tmp_path / 'results' / 'arms.md').read_text()
    assert 'Not finished in fold 2: lstm, scratch, scratch_last_day, causal.' in table
    assert 'Not finished in fold 1' not in table
    assert '`scratch` − `scratch_last_day`' in table
    assert (tmp_path / 'results' / 'median_nse.png').read_bytes()[:4] == b'\x89PNG'

    # a fresh checkout: fold 1's runs are gone, an earlier summary holds their scores and those of fold 2
    earlier = pd.read_csv(tmp_path / 'results' / 'per_basin.csv', dtype={'basin': str, 'seed': str})
    earlier = pd.concat([earlier, earlier.assign(fold=2, NSE=earlier['NSE'] - 0.1)], ignore_index=True)
    earlier.to_csv(tmp_path / 'results' / 'per_basin.csv', index=False)
    arms_again = summarise.summarise(output, tmp_path / 'results', earlier=tmp_path / 'results' / 'per_basin.csv')
    merged = pd.read_csv(tmp_path / 'results' / 'per_basin.csv', dtype={'basin': str, 'seed': str})
    assert len(merged) == len(earlier) and not merged.duplicated(['basin', 'fold', 'model', 'seed']).any()
    assert list(arms_again['folds']) == ['1 2'] * 4
    assert 'Not finished' not in (tmp_path / 'results' / 'arms.md').read_text()
    only_two = summarise.summarise(output, tmp_path / 'fold_2', earlier=tmp_path / 'results' / 'per_basin.csv',
                                   only_folds=[2])
    assert list(only_two['folds']) == ['2'] * 4
    assert np.allclose(only_two['median_nse'], arms['median_nse'] - 0.1)


def test_a_difference_pairs_the_seeds_both_arms_ran_and_reads_a_minus_b():
    basins = [f'b{i:02d}' for i in range(12)]
    rows = [{'basin': basin, 'fold': 1 + i % 2, 'group': 'random', 'model': model, 'seed': seed, 'days': days,
             'NSE': nse + 0.01 * i, 'KGE': nse, 'RMSE': 1.0}
            for i, basin in enumerate(basins)
            for model, seed, days, nse in [('scratch', '0', 3473, 0.50), ('scratch', '1', 3652, 0.70),
                                           ('scratch_last_day', '0', 3473, 0.45), ('lstm', '0', 3473, 0.30),
                                           ('causal', '0', 3473, 0.60), ('causal', '1', 3652, 0.40)]]
    per_basin = pd.DataFrame(rows)
    differences = summarise.difference_table(per_basin).set_index(['a', 'b'])
    # the same trained models: seed 0 only, not the seed mean of scratch
    assert differences.loc[('scratch', 'scratch_last_day'), 'seeds'] == 1
    assert np.isclose(differences.loc[('scratch', 'scratch_last_day'), 'median_difference'], 0.05)
    assert differences.loc[('causal', 'scratch'), 'seeds'] == 2
    assert np.isclose(differences.loc[('causal', 'scratch'), 'median_difference'], -0.10)
    assert np.isclose(differences.loc[('scratch', 'lstm'), 'median_difference'], 0.20)  # A − B, not B − A
    table = summarise.markdown(pd.DataFrame(columns=['arm']), differences.reset_index(), {}, per_basin, 2)
    assert 'median days: seed 0: 3473, seed 1: 3652' in table


def test_the_fold_table_gives_each_difference_per_fold_and_seed_both_arms_ran():
    rows = [{'basin': f'b{i}', 'fold': fold, 'model': model, 'seed': seed, 'NSE': nse + fold / 10 + i / 100}
            for fold in (1, 2) for i in range(3)
            for model, seed, nse in [('scratch', '0', 0.5), ('scratch', '1', 0.6), ('causal', '0', 0.4),
                                     ('lstm', '0', 0.2)]]
    per_fold = summarise.fold_table(pd.DataFrame(rows)).set_index(['a', 'b', 'seed', 'fold'])['median_difference']
    assert np.isclose(per_fold[('causal', 'scratch', '0', 2)], -0.1)
    assert np.isclose(per_fold[('scratch', 'lstm', '0', 1)], 0.3)
    assert ('causal', 'scratch', '1', 1) not in per_fold.index  # causal and the LSTM ran seed 0 only
    assert ('scratch', 'lstm', '1', 1) not in per_fold.index
    table = summarise.fold_markdown(summarise.fold_table(pd.DataFrame(rows)))
    assert '| `causal` − `scratch` | 0 | -0.100 | -0.100 |' in table


def test_the_decomposition_figure_reads_the_summaries_it_is_given_and_names_a_missing_one(tmp_path):
    for name, differences in [('one', [('scratch', 'lstm', 0.06), ('causal', 'scratch', -0.001)]),
                              ('tenth', [('causal', 'scratch', 0.002)])]:
        (tmp_path / name).mkdir()
        pd.DataFrame([{'a': a, 'b': b, 'folds': 5, 'seeds': 2, 'median_difference': value, 'low': value - 0.01,
                       'high': value + 0.01} for a, b, value in differences]).to_csv(tmp_path / name / 'differences.csv',
                                                                                     index=False)
    tables = decomposition.read([f'fraction 1={tmp_path / "one"}', f'fraction 0.1={tmp_path / "tenth"}'])
    assert list(tables) == ['fraction 1', 'fraction 0.1']
    assert tables['fraction 0.1'].loc[('causal', 'scratch'), 'median_difference'] == 0.002
    decomposition.plot(tables, tmp_path / 'decomposition.png')
    assert (tmp_path / 'decomposition.png').stat().st_size > 0
    with pytest.raises(FileNotFoundError, match='run summarise.py'):
        decomposition.read([f'x={tmp_path / "missing"}'])
    with pytest.raises(ValueError, match='LABEL=DIR'):
        decomposition.read([str(tmp_path / 'one')])
