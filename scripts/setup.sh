#!/usr/bin/env bash
# Idempotent setup for prognos: the Python venv in ml/.venv (training, evaluation,
# test clients, the ONNX Runtime library that `ort` loads, the tansu test broker).
# Quick when nothing changed: the venv is rebuilt only when ml/requirements.txt does.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=ml/.venv
STAMP=$VENV/.requirements.sha256
want=$(sha256sum ml/requirements.txt | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

echo "setup: creating $VENV from ml/requirements.txt (once; a few minutes on a fresh machine)"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r ml/requirements.txt

lib=$(ls "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1 || true)
if [ -z "$lib" ]; then
  echo "setup: onnxruntime installed but libonnxruntime.so was not found in $VENV" >&2
  exit 1
fi
echo "$want" > "$STAMP"
echo "setup: ready (ONNX Runtime library: $lib)"
