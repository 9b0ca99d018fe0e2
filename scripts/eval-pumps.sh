#!/usr/bin/env bash
# Train on one generated pump fleet, backtest on another (issue "predictions that
# hold on equipment nobody tuned for"): the pump example's configuration as it is,
# nothing chosen on the test fleet.
#
#   scripts/eval-pumps.sh TRAIN_DIR TEST_DIR [DATA_DIR]
#
# Each fleet directory is the output of the pump-fleet generator
# (`gen_pump_fleet.py --out DIR`: pumpco.jsonl, events.jsonl with `org`/`machine`
# keys). Prints `prognos replay --breakdown` on the training fleet and on the test
# fleet: hybrid, rules+forecast, rules, forecast and ml rows per component.
set -euo pipefail
cd "$(dirname "$0")/.."
train=${1:?train fleet dir}; test=${2:?test fleet dir}
data=${3:-$(mktemp -d)}
mkdir -p "$data"
bin=${PROGNOS_BIN:-target/release/prognos}
config=${PUMPS_CONFIG:-config/examples/pumps.toml}
[ -x "$bin" ] || cargo build --release --bin prognos
convert() { # the generator's work orders in prognos' failure-event format
  python3 -c 'import json,sys; [print(json.dumps({"organizationId": e["org"], "machineId": e["machine"], "component": e["component"], "start": e["start"], "end": e["end"]})) for e in map(json.loads, sys.stdin)]' < "$1/events.jsonl" > "$data/$(basename "$1").events.jsonl"
  echo "$data/$(basename "$1").events.jsonl"
}
export PROGNOS_CONFIG=$config PROGNOS_DATA_DIR=$data
p() { "$bin" "$@"; }
train_events=$(convert "$train"); test_events=$(convert "$test")
p history import --org pumpco "$train/pumpco.jsonl" > /dev/null
p history failures import --org pumpco "$train_events" > /dev/null
/usr/bin/time -f "training: %e s wall, %M KB peak" "$bin" train --org pumpco > "$data/train.json"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("trained", j.get("version"), j.get("status"), "deployed" if j.get("deployed") else "not deployed", "rows", j.get("trainingRows"), j.get("reason") or "")' "$data/train.json"
python3 - "$data/models/pumpco/v1/metadata.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
op, v = m.get("operatingPoint") or {}, m.get("validation") or {}
c = op.get("chosen")
print("validation operating point (budget %s):" % op.get("budget"),
      "chosen", op["points"][c] if c is not None else None, "adds", op.get("adds"))
print("rules+forecasts on the same rows:", op.get("rulesAndForecasts"))
pooled = (v.get("folds") or {}).get("pooled")
if pooled:
    print("grouped folds, pooled:", json.dumps({k: pooled[k] for k in ("eventRecall", "falseAlarmsPerMachineDay") if k in pooled}))
PY
if ! python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("deployed") else 1)' "$data/train.json"; then
  echo "(v1 was not deployed; activated here for the evaluation only, with the configured thresholds)"
  p models activate --org pumpco --version v1 --data-dir "$data" > /dev/null
fi
for fleet in "$train:$train_events" "$test:$test_events"; do
  dir=${fleet%%:*}; ev=${fleet#*:}
  echo "== $dir"
  p replay --input "$dir/pumpco.jsonl" --org pumpco --events "$ev" --breakdown -w 2
done
