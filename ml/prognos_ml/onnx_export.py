"""ONNX export of the three LightGBM models, onnxruntime scoring and the parity check."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 15
INPUT_NAME = "input"
PARITY_TOL = 1e-4


class ParityError(RuntimeError):
    pass


def convert(booster, n_features: int, name: str) -> onnx.ModelProto:
    """`booster` should come from `float32_exact` so that the float32 thresholds of the
    ONNX tree ensemble make exactly LightGBM's decisions."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    return convert_lightgbm(booster, name=name, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                            target_opset=OPSET, zipmap=False)



def convert_failure(boosters: list, n_features: int, name: str) -> onnx.ModelProto:
    """The failure model as one ONNX graph with the converted classifier's inputs and
    outputs (`label`, `probabilities` [N, 2]). One booster converts as it is; several
    (an ensemble, `training.ensemble`) become one tree-ensemble node each, their
    probabilities averaged (`Sum` x 1/K) and the label the arg-max of the average, so
    the serving side loads and runs it like a single model."""
    if len(boosters) == 1:
        return convert(boosters[0], n_features, name)
    members = [convert(b, n_features, f"{name}-{i}") for i, b in enumerate(boosters)]
    nodes, probs = [], []
    for i, m in enumerate(members):
        (tree,) = [n for n in m.graph.node if n.op_type == "TreeEnsembleClassifier"]
        node = onnx.NodeProto()
        node.CopyFrom(tree)
        node.name = f"member{i}"
        del node.output[:]
        node.output.extend([f"label{i}", f"probabilities{i}"])
        nodes.append(node)
        probs.append(f"probabilities{i}")
    k = len(members)
    nodes += [
        helper.make_node("Sum", probs, ["probability_sum"]),
        helper.make_node("Mul", ["probability_sum", "inv_k"], ["probabilities"]),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    inits = [helper.make_tensor("inv_k", TensorProto.FLOAT, [], [1.0 / k])]
    inp = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, [None])
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph(nodes, name, [inp], [label, out], initializer=inits)
    model = helper.make_model(graph, opset_imports=list(members[0].opset_import), producer_name="prognos")
    model.ir_version = members[0].ir_version
    onnx.checker.check_model(model)
    return model

_THRESHOLD_LINE = re.compile(r"^threshold=(.*)$", re.M)


def _floor32(values: np.ndarray) -> np.ndarray:
    f = values.astype(np.float32)
    over = f.astype(np.float64) > values
    f[over] = np.nextafter(f[over], np.float32(-np.inf))
    return f


def float32_exact(booster):
    """The same model with every split threshold t replaced by the largest float32 <= t.

    LightGBM decides `x <= t` in double; the ONNX tree ensemble stores float32 thresholds,
    and rounding t to the nearest float32 can land above t, flipping the decision for an
    input equal to that float32 (seen: 0.09 probability differences). The models take
    float32 inputs, and for a float32 x, x <= t <=> x <= floor32(t): the rewritten booster
    predicts exactly like the original on float32 inputs, and its thresholds survive the
    float32 conversion unchanged. (Numerical splits only; prognos has no categorical ones.)"""
    import lightgbm as lgb

    text = booster.model_to_string()
    if "cat_boundaries=" in text:
        raise ValueError("categorical splits are not supported by float32_exact")

    def repl(m):
        vals = np.array([float(v) for v in m.group(1).split()], dtype=np.float64)
        return "threshold=" + " ".join(repr(float(v)) for v in _floor32(vals))

    text = _THRESHOLD_LINE.sub(repl, text)
    # tree_sizes holds byte offsets of the tree blocks, which the rewrite changes;
    # without it LightGBM parses the trees sequentially.
    text = re.sub(r"^tree_sizes=.*\n", "", text, flags=re.M)
    return lgb.Booster(model_str=text)


def constant_classifier(n_features: int, name: str) -> onnx.ModelProto:
    """Fallback component model when the training data shows a single component:
    label 0 and probabilities [[1.0]] for every row (same inputs/outputs as a converted
    LightGBM classifier)."""
    inp = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, [None])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])
    nodes = [
        helper.make_node("Shape", [INPUT_NAME], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["n"]),
        helper.make_node("ConstantOfShape", ["n"], ["label"],
                         value=helper.make_tensor("v0", TensorProto.INT64, [1], [0])),
        helper.make_node("Concat", ["n", "one"], ["pshape"], axis=0),
        helper.make_node("ConstantOfShape", ["pshape"], ["probabilities"],
                         value=helper.make_tensor("v1", TensorProto.FLOAT, [1], [1.0])),
    ]
    inits = [helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
             helper.make_tensor("one", TensorProto.INT64, [1], [1])]
    graph = helper.make_graph(nodes, name, [inp], [label, probs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="prognos")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def session(model: onnx.ModelProto | str | Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def run(model, X: np.ndarray, output: str, batch: int = 200_000) -> np.ndarray:
    """One named output of `model` on float32 rows X (batched)."""
    sess = model if hasattr(model, "run") else session(model)
    X = np.ascontiguousarray(X, dtype=np.float32)
    parts = [sess.run([output], {INPUT_NAME: X[i:i + batch]})[0] for i in range(0, max(len(X), 1), batch)]
    return np.concatenate(parts) if parts else np.empty((0,))


def onnx_outputs(kind: str, model, X: np.ndarray) -> np.ndarray:
    """The comparable output of a model: failure -> P(failure) [N]; component ->
    probabilities [N, K]; ttf -> minutes [N]."""
    if kind == "failure":
        return run(model, X, "probabilities")[:, 1]
    if kind == "component":
        return run(model, X, "probabilities")
    if kind == "ttf":
        return run(model, X, "variable").reshape(-1)
    raise ValueError(kind)


def parity_check(kind: str, reference: np.ndarray, model, X: np.ndarray, tol: float = PARITY_TOL) -> float:
    """Max |reference - onnxruntime(model, X)|; raises ParityError naming the model when
    it exceeds `tol` (or shapes differ / NaN appears on one side only)."""
    got = onnx_outputs(kind, model, X)
    ref = np.asarray(reference, dtype=np.float64)
    if got.shape != ref.shape:
        raise ParityError(f"parity check failed for the {kind} model: ONNX output shape {got.shape} "
                          f"!= LightGBM {ref.shape}")
    if len(ref) == 0:
        return 0.0
    diff = np.abs(got.astype(np.float64) - ref)
    nan_mismatch = np.isnan(got) != np.isnan(ref)
    delta = float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0
    if nan_mismatch.any():
        delta = float("inf")
    if not delta <= tol:
        i = int(np.nanargmax(np.where(nan_mismatch, np.inf, diff).reshape(len(ref), -1).max(axis=1)))
        raise ParityError(f"parity check failed for the {kind} model: max |delta| = {delta:.3g} > {tol:g} "
                          f"between LightGBM and onnxruntime (worst row {i})")
    return delta
