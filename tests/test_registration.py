"""Registration into the stock NH commands: the .pth hook, laziness, opt-out, idempotence, and a real `nh-run`."""
import importlib.metadata
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from ruamel.yaml import YAML

import nh_stefaland
from neuralhydrology import modelzoo, nh_run
from nh_stefaland.nh import registration
from neuralhydrology.training import basetrainer
from neuralhydrology.evaluation import tester

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# NH with a renamed modelzoo resolver, as another NH version might have it: the patch finds no `get_model`
RENAMED_RESOLVER = """
import json, pickle, sys
from pathlib import Path
from nh_stefaland.nh import registration

patch_modelzoo = registration.PATCHES['neuralhydrology.modelzoo']

def patch_without_get_model(module):
    get_model = vars(module).pop('get_model')
    try:
        patch_modelzoo(module)
    finally:
        module.get_model = get_model

registration.PATCHES['neuralhydrology.modelzoo'] = patch_without_get_model

from neuralhydrology.nh_run import eval_run, start_run
from neuralhydrology import evaluation, modelzoo, training
from neuralhydrology.evaluation import tester
from neuralhydrology.training import basetrainer, train
from neuralhydrology.utils.config import Config

def patched():
    resolvers = [modelzoo.get_model, basetrainer.get_model, tester.get_model, training.get_loss_obj,
                 train.start_training, evaluation.get_tester, Config._check_cfg_keys, Config.head.fget]
    return ([f.__name__ for f in resolvers if hasattr(f, '__nh_stefaland_original__')]
            + [key for key in dir(Config) if key.startswith('stefaland_')])

report = {'patched_after_import': patched()}
start_run(Path(sys.argv[1]))
run_dir, = (Path(sys.argv[2])).iterdir()
eval_run(run_dir, period='test')
with (run_dir / 'test' / 'model_epoch001' / 'test_results.p').open('rb') as fp:
    results = pickle.load(fp)
report['finite'] = all(bool((basin['1D']['xr']['streamflow_sim'].notnull()).all()) for basin in results.values())
report['basins'] = len(results)
import nh_stefaland
try:
    nh_stefaland.register()
    report['register'] = 'no error'
except AttributeError as error:
    report['register'] = str(error)
report['patched_after_register'] = patched()
print(json.dumps(report))
"""


def _python(code: str, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True,
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


def test_a_failed_patch_leaves_neuralhydrology_working_and_warns_once(tmp_path):
    """A resolver NH no longer has: importing NH, training and evaluating cudalstm work, nothing stays patched."""
    yaml = YAML(typ='safe')
    cfg = {key: value for key, value in yaml.load(ROOT / 'tests' / 'configs' / 'caravan_sample.yml').items()
           if not key.startswith('stefaland_')}
    for key in ('data_dir', 'train_basin_file', 'validation_basin_file', 'test_basin_file'):
        cfg[key] = str(ROOT / cfg[key])
    cfg.update({'model': 'cudalstm', 'run_dir': str(tmp_path / 'runs')})
    yaml.dump(cfg, tmp_path / 'config.yml')
    out = _python(RENAMED_RESOLVER, tmp_path / 'config.yml', tmp_path / 'runs')
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report['patched_after_import'] == [] and report['patched_after_register'] == []
    assert report['basins'] == 3 and report['finite']
    assert report['register'] == "module 'neuralhydrology.modelzoo' has no attribute 'get_model'"
    version = importlib.metadata.version('neuralhydrology')
    warning = (f"StefaLand is not registered with NeuralHydrology {version} (nh_stefaland "
               f"{nh_stefaland.__version__}): patching neuralhydrology.modelzoo failed with AttributeError: ")
    assert (out.stdout + out.stderr).count('StefaLand is not registered') == 1 and warning in out.stderr


@pytest.mark.parametrize('first', ['nh_stefaland.model.settings', 'nh_stefaland.model.checks',
                                   'nh_stefaland.tools.pub.scoring'])
def test_registration_works_whichever_module_is_imported_first(first):
    code = (f"import {first}; from neuralhydrology import modelzoo; "
            "print(hasattr(modelzoo.get_model, '__nh_stefaland_original__'))")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == 'True' and 'not registered' not in result.stderr


class _Python310Error(ValueError):
    """An error as Python 3.10 raises it: without ``add_note`` (Python 3.11+)."""

    def __getattribute__(self, name: str):
        if name == 'add_note':
            raise AttributeError(name)
        return super().__getattribute__(name)


def _failing_patch(module):
    registration._set(module, 'resolver', 'patched')
    raise _Python310Error("resolver renamed")


def test_a_failed_patch_is_taken_back_and_reported_without_add_note(monkeypatch):
    module = ModuleType('neuralhydrology.fake')
    module.resolver = 'original'
    monkeypatch.setattr(registration, '_UNDO', [])  # the real registration's record stays untouched
    monkeypatch.setitem(registration.PATCHES, module.__name__, _failing_patch)
    with pytest.raises(_Python310Error, match=r"^resolver renamed \(nh_stefaland could not patch "
                                              r"neuralhydrology.fake; NeuralHydrology is left as installed.\)$"):
        registration.patch_module(module)
    assert module.resolver == 'original' and registration._UNDO == []


PYTHON_310 = os.environ.get('NH_STEFALAND_PYTHON310', 'python3.10')
REGISTRATION_ON_PYTHON_310 = """
import sys
from types import ModuleType
from nh_stefaland.nh import registration

def failing_patch(module):
    registration._set(module, 'resolver', 'patched')
    raise ValueError('resolver renamed')

module = ModuleType('neuralhydrology.fake')
module.resolver = 'original'
registration.PATCHES[module.__name__] = failing_patch
try:
    registration.patch_module(module)
except ValueError as error:
    print(sys.version_info[:2] == (3, 10), module.resolver, str(error))
"""


def _runs(python: str) -> bool:
    try:
        return subprocess.run([python, '--version'], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not _runs(PYTHON_310), reason=f"no Python 3.10 ({PYTHON_310}; set NH_STEFALAND_PYTHON310)")
def test_registration_failure_path_on_python_310(tmp_path):
    """registration.py imports the standard library only, so the real 3.10 interpreter runs it without NH."""
    out = subprocess.run([PYTHON_310, '-c', REGISTRATION_ON_PYTHON_310], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, 'PYTHONPATH': str(ROOT), 'NH_STEFALAND_AUTOLOAD': '0'})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ("True original resolver renamed (nh_stefaland could not patch neuralhydrology.fake; "
                                  "NeuralHydrology is left as installed.)")
