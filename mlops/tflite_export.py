"""Edge export: the Keras model as TFLite flatbuffers, float and dynamic-range quantised.

The TFT graph (vocabulary hash tables, string joins and hashing, sparse z-scoring) is not part
of the TFLite model: TFLite's builtin op set has none of those string and table ops, and the
Flex delegate (SELECT_TF_OPS) that would carry them links the TensorFlow runtime into the app,
which defeats an edge model. So the TFLite model takes the *transformed* features (int64 ids and
float32 numbers, one tensor per feature, as `model_info.json` lists them) and the transform runs
on the host, with the SavedModel's `transform_features_layer` or an equivalent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlops.artifacts import TFLITE_FLOAT_FILE, TFLITE_QUANTIZED_FILE


def convert(model: Any, quantize: bool) -> bytes:
    """The Keras `model` as a TFLite flatbuffer with builtin ops only: one input tensor per
    transformed feature (named as the feature), class probabilities out. `quantize` applies
    post-training dynamic-range quantisation (int8 weights of tensors of 1024+ elements)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    signature = {
        name: tf.TensorSpec([None], tensor.dtype, name=name) for name, tensor in model.input.items()
    }

    @tf.function(input_signature=[signature])
    def predict(features: dict[str, Any]) -> Any:
        return model(features, training=False)

    # Frozen first: the converter keeps Keras 3's resource variables as TFLite variables that
    # nothing initialises (NaN outputs), through a SavedModel as well as from a function.
    frozen = convert_variables_to_constants_v2(predict.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


class TFLiteClassifier:
    """Runs a TFLite flatbuffer written by `convert` on transformed feature arrays."""

    def __init__(self, flatbuffer: bytes) -> None:
        import tensorflow as tf

        self._interpreter = tf.lite.Interpreter(model_content=flatbuffer)
        self._inputs = {
            detail["name"].split(":")[0]: detail for detail in self._interpreter.get_input_details()
        }
        self.input_names = sorted(self._inputs)

    def predict(self, features: dict[str, Any]) -> np.ndarray:
        missing = sorted(set(self.input_names) - set(features))
        if missing:
            raise ValueError(f"the TFLite model needs the transformed features {missing}")
        interpreter = self._interpreter
        rows = len(np.asarray(features[self.input_names[0]]))
        for detail in self._inputs.values():
            interpreter.resize_tensor_input(detail["index"], [rows])
        interpreter.allocate_tensors()
        for name, detail in self._inputs.items():
            interpreter.set_tensor(detail["index"], np.asarray(features[name], detail["dtype"]))
        interpreter.invoke()
        return np.array(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


def export_tflite(
    model: Any,
    out_dir: Path,
    test_features: dict[str, Any],
    test_labels: np.ndarray,
) -> dict[str, Any]:
    """Write the float and quantised models to `out_dir` and measure each on the test split
    (already transformed) against the Keras model: size, accuracy, largest probability gap."""
    keras_probabilities = np.asarray(model.predict(dict(test_features), verbose=0))
    keras_accuracy = float((keras_probabilities.argmax(axis=1) == test_labels).mean())
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "inputs": "transformed features (the TFT transform runs on the host)",
        "test_rows": int(len(test_labels)),
        "keras_test_accuracy": round(keras_accuracy, 4),
        "models": {},
    }
    for variant, file_name, quantize in (
        ("float", TFLITE_FLOAT_FILE, False),
        ("dynamic_range", TFLITE_QUANTIZED_FILE, True),
    ):
        flatbuffer = convert(model, quantize)
        (out_dir / file_name).write_bytes(flatbuffer)
        probabilities = TFLiteClassifier(flatbuffer).predict(test_features)
        report["models"][variant] = {
            "file": file_name,
            "bytes": len(flatbuffer),
            "test_accuracy": round(float((probabilities.argmax(axis=1) == test_labels).mean()), 4),
            "max_probability_gap": round(
                float(np.abs(probabilities - keras_probabilities).max()), 6
            ),
        }
    return report
