#!/usr/bin/env python3
"""Export scikit-learn models as ONNX with skl2onnx, for the registry's import tests, with the
signature the `onnx` package reads from each file (the golden the registry must match).

Usage: pip install scikit-learn skl2onnx onnx && python3 scripts/export_onnx.py
"""
import json
import pathlib

import onnx
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx"

# ONNX TensorProto element types to Open Inference Protocol datatypes.
OIP = {1: "FP32", 6: "INT32", 7: "INT64", 8: "BYTES", 9: "BOOL", 11: "FP64"}


def tensors(values):
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                 for d in tensor.shape.dim]
        specs.append({"name": value.name, "datatype": OIP[tensor.elem_type], "shape": shape})
    return specs


def export(name, model, x, options=None):
    model.fit(*x)
    proto = to_onnx(model, x[0][:1].astype("float32"), target_opset=17, options=options)
    path = OUT / f"{name}.onnx"
    path.write_bytes(proto.SerializeToString())
    checked = onnx.load(str(path))
    onnx.checker.check_model(checked)
    golden = {"inputs": tensors(checked.graph.input), "outputs": tensors(checked.graph.output)}
    (OUT / f"{name}.signature.json").write_text(json.dumps(golden, indent=2) + "\n")
    # What scikit-learn itself answers for a few rows: the serving tests compare against it.
    rows = x[0][:5]
    expected = {"rows": rows.tolist(), "predict": model.predict(rows).tolist()}
    if hasattr(model, "predict_proba"):
        expected["predict_proba"] = model.predict_proba(rows).tolist()
    (OUT / f"{name}.expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(path, golden)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    diabetes = load_diabetes()
    export("diabetes_linear", LinearRegression(), (diabetes.data, diabetes.target))
    iris = load_iris()
    # Probabilities as a plain tensor, not skl2onnx's default list of maps: what a server serves.
    export("iris_logistic", LogisticRegression(max_iter=500), (iris.data, iris.target),
           options={"zipmap": False})


if __name__ == "__main__":
    main()
