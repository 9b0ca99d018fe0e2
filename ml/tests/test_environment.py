"""The pinned training stack works together: LightGBM -> onnxmltools (opset 15,
ZipMap off) -> ONNX Runtime reproduces LightGBM's probabilities, and the
libonnxruntime.so that the Rust `ort` crate loads is the one in this venv."""

import pathlib

import lightgbm as lgb
import numpy as np
import onnxruntime as ort
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType


def test_lightgbm_onnx_parity():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 12)).astype(np.float32)
    y = ((x[:, 0] + 0.5 * x[:, 3] ** 2 - x[:, 7] + rng.normal(scale=0.5, size=2000)) > 0.5).astype(int)
    model = lgb.LGBMClassifier(n_estimators=50, num_leaves=15, verbose=-1).fit(x, y)
    onx = convert_lightgbm(
        model,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        target_opset=15,
        zipmap=False,
    )
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = {o.name: o for o in sess.get_outputs()}
    assert "probabilities" in outputs, outputs.keys()
    label, probs = sess.run(None, {"input": x})
    expected = model.predict_proba(x)
    assert probs.shape == expected.shape
    assert np.max(np.abs(probs - expected)) <= 1e-4
    assert (label == model.predict(x)).mean() > 0.999


def test_runtime_library_is_in_the_venv():
    capi = pathlib.Path(ort.__file__).parent / "capi"
    libs = sorted(capi.glob("libonnxruntime.so.*"))
    assert libs, f"no libonnxruntime.so.* in {capi}"
    assert libs[0].name == f"libonnxruntime.so.{ort.__version__}"
    assert ort.__version__ == "1.31.1"
