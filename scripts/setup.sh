#!/usr/bin/env bash
# Idempotent setup for prognos: the Python venv in ml/.venv (training, evaluation,
# test clients, the ONNX Runtime library that `ort` loads, the tansu test broker).
# Then ml/.venv-tools: the validators of k8s/ and the Containerfile
# (ml/requirements-tools.txt). Quick when nothing changed: a venv is rebuilt only
# when its requirements file does.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

# The deployment validators, in a venv of their own (their pins differ from ml/.venv's).
tools_venv() {
  local venv=ml/.venv-tools stamp=ml/.venv-tools/.requirements.sha256 want
  want=$(sha256sum ml/requirements-tools.txt | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
    return 0
  fi
  echo "setup: creating $venv from ml/requirements-tools.txt (once)"
  if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r ml/requirements-tools.txt
  for tool in kubernetes-validate checkov hadolint; do
    if [ ! -x "$venv/bin/$tool" ]; then
      echo "setup: $tool was not installed into $venv" >&2
      exit 1
    fi
  done
  echo "$want" > "$stamp"
}

VENV=ml/.venv
STAMP=$VENV/.requirements.sha256
want=$(sha256sum ml/requirements.txt | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  tools_venv
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
tools_venv
echo "setup: ready (ONNX Runtime library: $lib)"
