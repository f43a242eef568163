"""Start-up cost of the automatic registration: Python imports with and without the plugin, side by side.

Runs each statement in fresh interpreters, alternating plugin on (default) and off (``NH_STEFALAND_AUTOLOAD=0``),
and reports the median wall time and whether the statement imported torch with the plugin. Reading a config
(NH's ``Config``, also a StefaLand one, whose keys and values the plugin checks) must not import torch: the script
exits with status 1 when one of the :data:`TORCH_FREE` statements does. Writes
``benchmarks/results/import_time.json`` and prints a table.

    python benchmarks/import_time.py [--repeats 15]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / 'basin_configs' / 'camels_stefaland.yml'
STATEMENTS = {
    'python': 'pass',
    'import neuralhydrology': 'import neuralhydrology',
    'import Config': 'from neuralhydrology.utils.config import Config',
    # without the plugin NH knows no stefaland_* key: it reads the file in dev_mode, which accepts unknown keys
    'read a StefaLand config': f'import os; from pathlib import Path; from neuralhydrology.utils.config import Config; '
                               f'Config(Path({str(CONFIG)!r}), '
                               f'dev_mode=os.environ.get("NH_STEFALAND_AUTOLOAD") == "0")',
    'import neuralhydrology.nh_run': 'import neuralhydrology.nh_run',
}
TORCH_FREE = ('python', 'import neuralhydrology', 'import Config', 'read a StefaLand config')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--output', type=Path, default=Path(__file__).parent / 'results' / 'import_time.json')
    args = parser.parse_args()

    results = {}
    for label, statement in STATEMENTS.items():
        times = {'with_plugin': [], 'without_plugin': []}
        _run(statement, '1')  # warm the file cache
        for _ in range(args.repeats):
            times['with_plugin'].append(_run(statement, '1'))
            times['without_plugin'].append(_run(statement, '0'))
        results[label] = {key: round(statistics.median(values) * 1000, 1) for key, values in times.items()}
        results[label]['torch_imported_with_plugin'] = _imports_torch(statement)

    report = {'unit': 'ms (median wall time of a fresh interpreter)', 'repeats': args.repeats,
              'machine': f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"Python {platform.python_version()}", 'results': results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + '\n')
    print(f"{'statement':34s} {'with plugin':>12s} {'without':>10s}  torch imported")
    for label, row in results.items():
        print(f"{label:34s} {row['with_plugin']:10.1f}ms {row['without_plugin']:8.1f}ms  "
              f"{row['torch_imported_with_plugin']}")
    print(f"written to {args.output}")
    heavy = [label for label in TORCH_FREE if results[label]['torch_imported_with_plugin']]
    if heavy:
        print(f"torch was imported by: {', '.join(heavy)}")
        sys.exit(1)


def _run(statement: str, autoload: str) -> float:
    env = {**os.environ, 'NH_STEFALAND_AUTOLOAD': autoload}
    start = time.perf_counter()
    subprocess.run([sys.executable, '-c', statement], env=env, check=True)
    return time.perf_counter() - start


def _imports_torch(statement: str) -> bool:
    code = f"{statement}; import sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    return out.stdout.strip() == 'True'


if __name__ == '__main__':
    main()
