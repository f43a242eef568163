"""Registration into the stock NH commands: the .pth hook, laziness, opt-out, idempotence, and a real `nh-run`."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
from ruamel.yaml import YAML

import nh_stefaland
from neuralhydrology import modelzoo, nh_run
from neuralhydrology.training import basetrainer
from neuralhydrology.evaluation import tester

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env={**os.environ, **env}, check=True)


def test_plain_python_does_not_import_torch_or_nh():
    out = _python("import sys; print('torch' in sys.modules, 'neuralhydrology' in sys.modules)")
    assert out.stdout.split() == ['False', 'False']


def test_importing_neuralhydrology_alone_stays_light():
    out = _python("import sys, neuralhydrology; print('torch' in sys.modules)")
    assert out.stdout.strip() == 'False'


def test_automatic_registration_reaches_early_bound_resolvers():
    out = _python("from neuralhydrology.training import basetrainer; from neuralhydrology.evaluation import tester;"
                  "from neuralhydrology import modelzoo;"
                  "print(basetrainer.get_model is modelzoo.get_model, tester.get_model is modelzoo.get_model,"
                  " hasattr(modelzoo.get_model, '__nh_stefaland_original__'))")
    assert out.stdout.split() == ['True', 'True', 'True']


def test_environment_variable_switches_automatic_registration_off():
    code = ("from neuralhydrology import modelzoo; print(hasattr(modelzoo.get_model, '__nh_stefaland_original__'));"
            "import nh_stefaland; nh_stefaland.register();"
            "from neuralhydrology.training import basetrainer;"
            "print(hasattr(basetrainer.get_model, '__nh_stefaland_original__'))")
    out = _python(code, NH_STEFALAND_AUTOLOAD='0')
    assert out.stdout.split() == ['False', 'True']


def test_register_is_idempotent():
    wrapped = modelzoo.get_model
    nh_stefaland.register()
    nh_stefaland.register()
    assert modelzoo.get_model is wrapped is basetrainer.get_model is tester.get_model
    original = wrapped.__nh_stefaland_original__
    assert not hasattr(original, '__nh_stefaland_original__')


def test_stock_nh_run_train_continue_and_evaluate(tmp_path):
    """The only proof that the installed .pth hook works: the real console scripts in fresh processes.

    `continue_training` runs NH's script the way `nh-schedule-runs` starts it (`python .../nh_run.py`).
    """
    yaml = YAML(typ='safe')
    cfg = yaml.load(ROOT / 'tests' / 'configs' / 'caravan_sample.yml')
    for key in ('data_dir', 'train_basin_file', 'validation_basin_file', 'test_basin_file'):
        cfg[key] = str(ROOT / cfg[key])
    cfg['run_dir'] = str(tmp_path / 'runs')
    config_file = tmp_path / 'config.yml'
    yaml.dump(cfg, config_file)
    subprocess.run([BIN / 'nh-run', 'train', '--config-file', config_file], check=True, capture_output=True)
    run_dir, = (tmp_path / 'runs').iterdir()
    subprocess.run([sys.executable, nh_run.__file__, 'continue_training', '--run-dir', run_dir], check=True,
                   capture_output=True)
    continued = run_dir / 'continue_training_from_epoch001'
    subprocess.run([BIN / 'nh-run', 'evaluate', '--run-dir', continued], check=True, capture_output=True)
    with (continued / 'test' / 'model_epoch002' / 'test_results.p').open('rb') as fp:
        results = pickle.load(fp)
    assert len(results) == 3
    assert all(np.isfinite(basin['1D']['xr']['streamflow_sim'].values).all() for basin in results.values())
    assert yaml.load(run_dir / 'config.yml')['model'] == 'stefaland'
