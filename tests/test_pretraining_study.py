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

from nh_stefaland.tools.pub.scoring import REPORT_METRICS

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


def _pub_output(folder: Path, seeds: tuple[str, ...] = ('0',), days: int = 300) -> Path:
    """A pub output folder with what summarise reads (report/per_basin.csv, pub.json, folds.csv, run statuses):
    arm 'base' better than 'scratch' by 0.1 in each of 6 basins of 2 folds, a seed adding 0.01 to both."""
    report = folder / 'report'
    report.mkdir(parents=True)
    rows = [{'basin': f'b{i}', 'fold': 1 + i % 2, 'group': 'random', 'model': model, 'seed': seed, 'days': days,
             **dict.fromkeys(REPORT_METRICS, value + 0.01 * int(seed))}
            for seed in seeds for i in range(6) for model, value in (('base', 0.5 + 0.01 * i),
                                                                     ('scratch', 0.4 + 0.01 * i))]
    pd.DataFrame(rows).to_csv(report / 'per_basin.csv', index=False)
    pd.DataFrame({'basin': [f'b{i}' for i in range(6)], 'fold': [1 + i % 2 for i in range(6)],
                  'group': 'random'}).to_csv(folder / 'folds.csv', index=False)
    pretraining = folder / 'pretrain.yml'
    pretraining.write_text('pretraining recipe\n')
    models = {'scratch': {'config': 'x', 'pretrain': None}, 'base': {'config': 'y', 'pretrain': str(pretraining)}}
    (folder / 'pub.json').write_text(json.dumps({'train_fraction': 0.1, 'models': models}))
    for label, name, seconds in (('scratch', 'fold_01', 600), ('scratch', 'fold_02', 660), ('base', 'fold_01', 120),
                                 ('base', 'pretrain', 900), ('base', 'seed_01_pretrain', 1020)):
        run = folder / 'runs' / label / name
        run.mkdir(parents=True)
        (run / 'status.json').write_text(json.dumps({'state': 'done', 'label': label, 'name': name,
                                                      'seconds': seconds}))
    return folder


def test_the_summary_turns_a_comparison_round_and_writes_tables_and_plots(tmp_path):
    table = summarise.arm_table(_pub_output(tmp_path / 'fraction_0.1'))
    base = table.set_index('arm').loc['base']
    assert base['vs_scratch'] == pytest.approx(0.1) and base['vs_scratch_share_better'] == pytest.approx(1.0)
    assert (base['vs_scratch_low'], base['vs_scratch_high']) == (pytest.approx(0.1), pytest.approx(0.1))
    scratch = table.set_index('arm').loc['scratch']
    assert scratch['vs_base'] == pytest.approx(-0.1) and np.isnan(base['vs_lstm'])  # both ways round
    assert base['folds'] == 2 and base['basins'] == 6 and base['minutes_per_run'] == pytest.approx(2.0)
    assert base['pretraining_minutes'] == pytest.approx(16.0)  # one pretraining run, the mean over seeds
    assert scratch['minutes_per_run'] == pytest.approx(10.5) and np.isnan(scratch['pretraining_minutes'])
    assert '| `base` | 1,000 | 800 | 2 × 1 | 0.525 | +0.100 (+0.100…+0.100; 100%) |' in summarise.markdown(table)
    summarise.plot_pretraining_updates(table, tmp_path / 'updates.png')
    summarise.plot_train_fraction(table, tmp_path / 'fraction.png')
    assert (tmp_path / 'updates.png').read_bytes()[:4] == b'\x89PNG'


def test_confirmation_folders_are_their_own_stage_with_a_per_fold_plot(tmp_path):
    screening = summarise.arm_table(_pub_output(tmp_path / 'fraction_0.1'))
    confirmation = summarise.arm_table(_pub_output(tmp_path / 'confirm_0.1'))
    assert set(screening['stage']) == {'screening'} and set(confirmation['stage']) == {'confirmation'}
    text = summarise.markdown(pd.concat([confirmation, screening], ignore_index=True))
    assert text.index('### Confirmation, train fraction 0.1') < text.index('### Screening, train fraction 0.1')
    summarise.plot_confirmation_folds({0.1: summarise.scores(tmp_path / 'confirm_0.1'),
                                       1.0: summarise.scores(tmp_path / 'fraction_0.1')}, tmp_path / 'folds.png')
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


def _committed(folder: Path) -> Path:
    """The per_basin.csv of a committed copy of the pub report of ``folder``: beside pub.json and folds.csv."""
    return (folder / 'report' / 'per_basin.csv').rename(folder / 'per_basin.csv')


def test_scores_of_an_earlier_report_join_the_folder_of_their_stage_and_fraction(tmp_path, capsys):
    earlier = _committed(_pub_output(tmp_path / 'committed' / 'confirm_0.1'))
    folder = _pub_output(tmp_path / 'runs' / 'confirm_0.1', seeds=('1', '2'))
    per_basin = summarise.scores(folder, [earlier, _committed(_pub_output(tmp_path / 'committed' / 'fraction_0.1'))])
    assert sorted(per_basin['seed'].unique()) == ['0', '1', '2'] and len(per_basin) == 3 * 12  # not the screening's
    table = summarise.arm_table(folder, summarise.scores(folder, [earlier]))
    assert '| `base` | 1,000 | 800 | 2 × 3 | 0.535 (0.525 0.535 0.545) |' in summarise.markdown(table)
    base = table.set_index('arm').loc['base']
    assert base['seeds'] == 3 and base['median_nse'] == pytest.approx(0.535)  # seed means: +0.01 on average
    assert base['seed_medians'] == '0.525 0.535 0.545'
    assert base['vs_scratch'] == pytest.approx(0.1)
    # an arm without seed 0 is compared with seeds 1 and 2 of the other, not with its three-seed mean (0.095)
    one_short = summarise.scores(folder, [earlier]).query("not (model == 'scratch' and seed == '0')")
    table = summarise.arm_table(folder, one_short).set_index('arm')
    assert table.loc['base', 'vs_scratch'] == pytest.approx(0.1) and table.loc['scratch', 'seeds'] == 2

    # a seed that stopped part-way is left out, not the basins of the folds it lacks
    partial = pd.read_csv(folder / 'report' / 'per_basin.csv', dtype={'seed': str})
    partial[(partial['seed'] == '1') | (partial['fold'] == 1)].to_csv(folder / 'report' / 'per_basin.csv', index=False)
    per_basin = summarise.scores(folder, [earlier])
    assert sorted(per_basin['seed'].unique()) == ['0', '1'] and per_basin['basin'].nunique() == 6
    assert 'seed 2 of base left out, it covers 1 of 2 folds' in capsys.readouterr().out

    other_days = _committed(_pub_output(tmp_path / 'days' / 'confirm_0.1', days=299))
    with pytest.raises(ValueError, match='other days .* 299 against 300 days'):
        summarise.scores(folder, [other_days])
    (earlier.parent / 'folds.csv').write_text('basin,fold,group\nb0,2,random\n')
    with pytest.raises(ValueError, match='folds'):
        summarise.scores(folder, [earlier])


def test_minutes_an_arm_lacks_come_from_the_earlier_summary(tmp_path):
    earlier = summarise.arm_table(_pub_output(tmp_path / 'old' / 'confirm_0.1'))
    earlier.to_csv(tmp_path / 'arms.csv', index=False)
    now = earlier.assign(minutes_per_run=np.nan, pretraining_minutes=np.nan, median_nse=0.9)
    table = summarise.with_earlier_rows(now, tmp_path / 'arms.csv').set_index('arm')
    assert table.loc['base', 'minutes_per_run'] == pytest.approx(2.0) and (table['median_nse'] == 0.9).all()
