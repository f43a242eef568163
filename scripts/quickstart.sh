#!/usr/bin/env bash
# Sets up .venv, trains StefaLand on the shipped sample with the stock `nh-run`, evaluates it, prints the results.
# Usage: bash scripts/quickstart.sh [CONFIG]   (default basin_configs/camels_stefaland.yml)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
CONFIG="${1:-basin_configs/camels_stefaland.yml}"
START=$(date +%s)
nh-run train --config-file "$CONFIG"
RUN_DIR=$(ls -dt runs/*/ | head -n 1)
nh-run evaluate --run-dir "$RUN_DIR"
python - "$RUN_DIR" "$START" <<'PY'
import sys, time
from pathlib import Path
import pandas as pd
run_dir, start = Path(sys.argv[1]), float(sys.argv[2])
metrics_file = sorted(run_dir.glob('test/model_epoch*/test_metrics.csv'))[-1]
metrics = pd.read_csv(metrics_file, dtype={'basin': str}).set_index('basin')
print(f"\nRun directory:  {run_dir}")
print(f"Test metrics:   {metrics_file}")
print(f"Test basins:    {len(metrics)} (finite NSE: {metrics['NSE'].notna().sum()})")
print(f"Median NSE:     {metrics['NSE'].median():.3f}   median KGE: {metrics['KGE'].median():.3f}")
print(f"Wall time:      {time.time() - start:.0f} s (train + evaluate)")
PY
