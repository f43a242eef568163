"""The pretraining study's scripts: each arm is its benchmark config with only its changes, every arm's config is
valid for NH and pub, and the summary reads pub's paired comparison the right way round."""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML

from neuralhydrology.utils.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks' / 'pretraining'))

import study  # noqa: E402
import summarise  # noqa: E402


@pytest.mark.parametrize('arm', sorted(study.ARMS))
def test_an_arm_is_its_benchmark_config_with_its_changes_only(arm, tmp_path):
    config, recipe, changes, budget = study.ARMS[arm]
    written = study.write_config(study.BENCHMARK / config, {**changes, **study.BUDGETS[budget]}, tmp_path / 'a.yml')
    original, copy = (YAML(typ='safe').load(path) for path in (study.BENCHMARK / config, written))
    expected = {**original, **changes, **study.BUDGETS[budget]}
    assert copy == expected
    Config(written)  # NH accepts every key
    if recipe is not None:
        pretraining = study.write_config(study.BENCHMARK / 'stefaland_pretrain.yml', study.PRETRAINING[recipe],
                                         tmp_path / 'p.yml')
        assert Config(pretraining).predict_last_n == 0  # pub may let it see every basin: it reads no streamflow
    updates = summarise.pretraining_updates(arm)
    assert (updates is None) == (recipe is None and 'base_run_dir' not in changes)


def test_pretraining_updates_follow_the_recipe():
    assert summarise.pretraining_updates('base') == 1000
    assert summarise.pretraining_updates('random_encoder') == 1
    assert summarise.pretraining_updates('long_3k') == 3000
    assert summarise.pretraining_updates('shipped') == summarise.SHIPPED_UPDATES
    assert summarise.pretraining_updates('lstm') is None


def _pub_output(folder: Path) -> Path:
    """A pub output folder with the report files summarise reads: arm 'base' better than 'scratch' by 0.1."""
    report = folder / 'report'
    report.mkdir(parents=True)
    rows = [{'basin': f'b{i}', 'fold': 1 + i % 2, 'group': 'random', 'model': model, 'seed': '0', 'NSE': value}
            for i in range(6) for model, value in (('base', 0.5 + 0.01 * i), ('scratch', 0.4 + 0.01 * i))]
    pd.DataFrame(rows).to_csv(report / 'per_basin.csv', index=False)
    pd.DataFrame([{'model': model, 'metric': 'NSE', 'median': median}
                  for model, median in (('scratch', 0.425), ('base', 0.525))]).to_csv(report / 'summary.csv')
    pd.DataFrame([{'model_a': 'scratch', 'model_b': 'base', 'metric': 'NSE', 'median_difference': -0.1,
                   'ci_low': -0.12, 'ci_high': -0.08, 'share_a_better': 0.0}]).to_csv(report / 'paired.csv')
    (folder / 'pub.json').write_text(json.dumps({'train_fraction': 0.1, 'models': {
        'scratch': {'config': 'x', 'pretrain': None}, 'base': {'config': 'y', 'pretrain': None}}}))
    for label, name, seconds in (('scratch', 'fold_01', 600), ('scratch', 'fold_02', 660), ('base', 'fold_01', 120)):
        run = folder / 'runs' / label / name
        run.mkdir(parents=True)
        (run / 'status.json').write_text(json.dumps({'state': 'done', 'label': label, 'name': name,
                                                      'seconds': seconds}))
    return folder


def test_the_summary_turns_a_comparison_round_and_writes_tables_and_plots(tmp_path):
    table = summarise.arm_table(_pub_output(tmp_path / 'fraction_0.1'))
    base = table.set_index('arm').loc['base']
    assert base['vs_scratch'] == pytest.approx(0.1)
    assert (base['vs_scratch_low'], base['vs_scratch_high']) == (pytest.approx(0.08), pytest.approx(0.12))
    assert base['vs_scratch_share_better'] == pytest.approx(1.0) and np.isnan(base['vs_lstm'])
    assert base['folds'] == 2 and base['basins'] == 6 and base['minutes_per_run'] == pytest.approx(2.0)
    assert table.set_index('arm').loc['scratch', 'minutes_per_run'] == pytest.approx(10.5)
    assert '| `base` | 1,000 | 800 | 2 × 1 | 0.525 | +0.100 (+0.080…+0.120; 100%) |' in summarise.markdown(table)
    summarise.plot_pretraining_updates(table, tmp_path / 'updates.png')
    summarise.plot_train_fraction(table, tmp_path / 'fraction.png')
    assert (tmp_path / 'updates.png').read_bytes()[:4] == b'\x89PNG'


def test_confirmation_folders_are_their_own_stage_with_a_per_fold_plot(tmp_path):
    screening = summarise.arm_table(_pub_output(tmp_path / 'fraction_0.1'))
    confirmation = summarise.arm_table(_pub_output(tmp_path / 'confirm_0.1'))
    assert set(screening['stage']) == {'screening'} and set(confirmation['stage']) == {'confirmation'}
    text = summarise.markdown(pd.concat([confirmation, screening], ignore_index=True))
    assert text.index('### Confirmation, train fraction 0.1') < text.index('### Screening, train fraction 0.1')
    summarise.plot_confirmation_folds([tmp_path / 'confirm_0.1'], tmp_path / 'folds.png')
    assert (tmp_path / 'folds.png').read_bytes()[:4] == b'\x89PNG'
    with pytest.raises(ValueError, match='fraction_<F> or confirm_<F>'):
        summarise.stage(tmp_path / 'study_0.1')


def test_a_summary_keeps_earlier_rows_it_has_no_runs_for(tmp_path):
    earlier = summarise.arm_table(_pub_output(tmp_path / 'fraction_0.1'))
    earlier.drop(columns='stage').to_csv(tmp_path / 'arms.csv', index=False)  # a summary without stages
    now = summarise.arm_table(_pub_output(tmp_path / 'confirm_0.1'))
    table = summarise.with_earlier_rows(now, tmp_path / 'arms.csv')
    assert sorted(zip(table['stage'], table['arm'])) == [('confirmation', 'base'), ('confirmation', 'scratch'),
                                                         ('screening', 'base'), ('screening', 'scratch')]
    assert len(summarise.with_earlier_rows(now, tmp_path / 'confirmation.csv')) == 2  # none earlier
    now.to_csv(tmp_path / 'again.csv', index=False)
    assert len(summarise.with_earlier_rows(now, tmp_path / 'again.csv')) == 2  # the runs replace their own rows
