#!/usr/bin/env bash
# Generate pump fleets (NASA progpy CentrifugalPumpWithWear) for the evaluations:
#
#   scripts/pump-fleets.sh OUT_DIR SEED...
#
# writes OUT_DIR/s<SEED>/{pumpco.jsonl,events.jsonl,meta.json} (20 pumps x 24 h,
# 12 h mean life), skipping a fleet already there. The generator is not part of
# prognos: it is looked for in $PUMPFLEET_DIR (default ../shared/tools/pumpfleet
# beside the checkout); progpy goes into its own venv (ml/.pumpvenv), never into
# the project's, and no test needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?output dir}; shift
gen=${PUMPFLEET_DIR:-../shared/tools/pumpfleet}/gen_pump_fleet.py
[ -f "$gen" ] || { echo "pump-fleets: no generator at $gen (set PUMPFLEET_DIR)" >&2; exit 2; }
venv=ml/.pumpvenv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import progpy' 2>/dev/null; then
  echo "pump-fleets: creating $venv with progpy (once)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q progpy numpy pandas
fi
for seed in "$@"; do
  dir=$out/s$seed
  if [ -s "$dir/pumpco.jsonl" ] && [ -s "$dir/events.jsonl" ]; then continue; fi
  echo "pump-fleets: generating seed $seed into $dir"
  "$venv/bin/python" "$gen" --units 20 --hours 24 --life-h 12 --seed "$seed" --out "$dir" > /dev/null
done
