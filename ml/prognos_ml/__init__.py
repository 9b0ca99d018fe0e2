"""prognos training side: labelling, time split, metrics, ONNX export and parity.

`train.py` and `evaluate.py` share this package so that a version's validation
metrics and a later re-evaluation use exactly the same definitions."""
