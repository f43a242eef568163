"""What the committed pub reports give without their runs: fold-cluster intervals and maps from per_basin.csv.

The reports under benchmarks/ungauged/ were written before pub resampled whole folds and drew maps; their runs are not
kept in the repository, so their metrics cannot be rescored on common days and no hydrograph can be drawn, but the
paired intervals can be recomputed and the maps drawn from the committed per-basin metrics (into each report folder,
with pub's own functions). Usage:

    python benchmarks/ungauged/committed_reports.py benchmarks/ungauged/pub benchmarks/ungauged/pur
"""
import json
import argparse
from pathlib import Path

import pandas as pd

from nh_stefaland.tools.pub import maps, stats
from nh_stefaland.tools.pub.markdown import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('reports', nargs='+', type=Path, help="Folders holding per_basin.csv and paired.csv.")
    args = parser.parse_args()
    rows = []
    for folder in args.reports:
        per_basin = pd.read_csv(folder / 'per_basin.csv', dtype={'basin': str})
        per_basin['seed'] = per_basin.get('seed', '0')
        means = stats.seed_means(per_basin)
        settings = json.loads((folder / 'pub.json').read_text())
        _, files = maps.write_maps(settings, means, stats.figure_pairs(list(means['model'].unique())), folder)
        print(f"{folder}: {', '.join(files) or 'no maps'}")
        basin_bootstrap = pd.read_csv(folder / 'paired.csv').set_index(['model_a', 'model_b', 'metric'])
        for _, row in stats.compare_pairs(per_basin).query("metric == 'NSE'").iterrows():
            old = basin_bootstrap.loc[(row['model_a'], row['model_b'], 'NSE')]
            rows.append({'report': folder.name, 'A − B': f"{row['model_a']} − {row['model_b']}",
                         'median': row['median_difference'], 'folds': int(row['folds']),
                         'over basins': f"{old['ci_low']:.3f} … {old['ci_high']:.3f}",
                         'over folds': f"{row['ci_low']:.3f} … {row['ci_high']:.3f}"})
    print(markdown_table(pd.DataFrame(rows)))


if __name__ == '__main__':
    main()
