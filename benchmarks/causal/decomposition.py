"""One figure of the causal study's answer: the paired differences of ``summarise.py`` side by side for several
summaries (train fractions), with their intervals and the run-to-run noise band (±0.01).

    python benchmarks/causal/decomposition.py \\
        --results 'train fraction 1=benchmarks/causal/results_seeds' \\
        --results 'train fraction 0.1=benchmarks/causal/results_fraction_0.1_seeds' \\
        --output benchmarks/causal/decomposition.png

reads each folder's ``differences.csv`` and draws, per difference of :data:`SHOWN`, one marker per summary: the median
over basins of the per-basin NSE difference A − B with its 95 % interval over folds and seeds. A difference a summary
does not have is left out of it.
"""
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
# (A, B, label): from the lead over the LSTM to what causality costs
SHOWN = [
    ('scratch', 'lstm', 'lead as published:\nbidirectional (≤179 later days) − LSTM'),
    ('scratch_last_day', 'lstm', 'the same runs, no later day\nin view − LSTM'),
    ('causal', 'lstm', 'causal − LSTM'),
    ('scratch', 'scratch_last_day', 'future forcing: the same runs\nwith − without later days'),
    ('causal', 'scratch', 'what causality costs:\ncausal − bidirectional'),
    ('pretrained_causal', 'pretrained', 'pretrained + finetuned:\ncausal − bidirectional'),
]
NOISE = 0.01
DEFAULT_RESULTS = [f'train fraction 1={HERE / "results_seeds"}',
                   f'train fraction 0.1={HERE / "results_fraction_0.1_seeds"}']


def read(results: list[str]) -> dict[str, pd.DataFrame]:
    """``LABEL=DIR`` → each folder's ``differences.csv`` indexed by (a, b), in the given order."""
    tables = {}
    for item in results:
        label, separator, folder = item.partition('=')
        if not separator:
            raise ValueError(f"--results {item!r}: write LABEL=DIR.")
        path = Path(folder) / 'differences.csv'
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: run summarise.py for {folder} first.")
        tables[label] = pd.read_csv(path).set_index(['a', 'b'])
    return tables


def plot(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """Per difference of :data:`SHOWN` (rows), one marker with its interval per summary (colours)."""
    shown = [entry for entry in SHOWN if any((entry[0], entry[1]) in table.index for table in tables.values())]
    figure, axis = plt.subplots(figsize=(8, 1.0 + 0.75 * len(shown)))
    offsets = np.linspace(0.15, -0.15, len(tables)) if len(tables) > 1 else [0.0]  # the first on top
    y = np.arange(len(shown))[::-1]
    for (label, table), offset in zip(tables.items(), offsets):
        rows = [(row, table.loc[(a, b)]) for row, (a, b, _) in zip(y, shown) if (a, b) in table.index]
        if not rows:
            continue
        positions = np.array([row for row, _ in rows]) + offset
        values = pd.DataFrame([values for _, values in rows])
        errors = [values['median_difference'] - values['low'], values['high'] - values['median_difference']]
        axis.errorbar(values['median_difference'], positions, xerr=errors, fmt='o', capsize=3, label=label)
        for position, value in zip(positions, values.itertuples()):
            axis.annotate(f"{value.folds} folds, {value.seeds} seed{'s' if value.seeds > 1 else ''}",
                          (value.high, position), xytext=(4, -3), textcoords='offset points', fontsize=6)
    axis.axvspan(-NOISE, NOISE, color='grey', alpha=0.15, label=f'±{NOISE} (run-to-run noise)')
    axis.axvline(0, color='black', linewidth=0.8)
    axis.set_yticks(y, [label for _, _, label in shown], fontsize=8)
    low, high = axis.get_xlim()
    axis.set_xlim(low, high + 0.25 * (high - low))  # room for the annotations
    axis.set_xlabel('paired median NSE difference A − B (95 % interval over folds and seeds)', fontsize=8)
    axis.set_title("Is StefaLand's lead over NH's LSTM architecture or future forcing?\n"
                   "PUB, 382 CAMELS-US basins, 800 updates per model", fontsize=9)
    axis.legend(fontsize=7, loc='lower right')
    axis.grid(axis='x', alpha=0.3)
    figure.text(0.01, 0.005, 'Data: Caravan / ERA5-Land, CAMELS-US attributes, USGS streamflow', fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--results', action='append', metavar='LABEL=DIR',
                        help="A summary folder of summarise.py and its label (repeat; default: the committed seeds "
                             "summaries at train fractions 1 and 0.1).")
    parser.add_argument('--output', type=Path, default=HERE / 'decomposition.png')
    args = parser.parse_args()
    try:
        tables = read(args.results or DEFAULT_RESULTS)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    plot(tables, args.output)
    print(f"Wrote {args.output}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
