"""Keras model families over the TFT-transformed features.

Every family takes the same inputs (one per transformed feature: int64 ids for categorical,
bucketized and crossed features, float32 for the rest) and returns class probabilities, so the
exported serving signature, evaluation, explanation and batch prediction do not depend on it.

* `linear`: softmax regression on one-hot ids and the numbers.
* `dnn`: embeddings of the ids and the numbers through `hidden_units` ReLU layers.
* `wide_deep`: the linear part and the DNN part, their logits summed before the softmax.

`training.l2` puts an L2 penalty on every dense kernel; `training.dropout` follows each hidden
layer.

The fourth family, `gbt` (gradient-boosted trees), is fitted by scikit-learn and compiled into a
Keras model of TensorFlow ops with the same inputs and outputs: see `mlops/trees.py`.
"""

from __future__ import annotations

from typing import Any

from mlops.config import TrainingConfig

MODEL_FAMILIES = ("linear", "dnn", "wide_deep")  # the Keras families build_model builds


def _kernel_regularizer(training: TrainingConfig) -> Any:
    import keras

    return keras.regularizers.L2(training.l2) if training.l2 else None


def _inputs(
    transformed_spec: dict[str, Any], sizes: dict[str, int], training: TrainingConfig, deep: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Inputs, float features as (batch, 1) columns and (when `deep`) embedded ids, by name.

    Layers are created feature by feature in name order: Keras draws each initializer's seed
    when its layer is created, so this order keeps the DNN's weights what they were before
    the other families existed."""
    import keras

    inputs: dict[str, Any] = {}
    numbers: dict[str, Any] = {}
    embedded: dict[str, Any] = {}
    for name in sorted(transformed_spec):
        if name in sizes:
            inputs[name] = keras.Input(shape=(), dtype="int64", name=name)
            if deep:
                embedded[name] = keras.layers.Embedding(
                    sizes[name], training.embedding_dim, name=f"emb_{name}"
                )(inputs[name])
        else:
            inputs[name] = keras.Input(shape=(), dtype="float32", name=name)
            numbers[name] = keras.layers.Reshape((1,), name=f"col_{name}")(inputs[name])
    return inputs, numbers, embedded


def _wide_logits(
    inputs: dict[str, Any],
    numbers: dict[str, Any],
    sizes: dict[str, int],
    num_classes: int,
    training: TrainingConfig,
) -> Any:
    import keras

    parts = [
        keras.layers.CategoryEncoding(sizes[name], output_mode="one_hot", name=f"onehot_{name}")(
            tensor
        )
        for name, tensor in inputs.items()
        if name in sizes
    ] + list(numbers.values())
    wide = keras.layers.Concatenate(name="wide_features")(parts) if len(parts) > 1 else parts[0]
    return keras.layers.Dense(
        num_classes, kernel_regularizer=_kernel_regularizer(training), name="wide_logits"
    )(wide)


def _deep_hidden(
    inputs: dict[str, Any],
    numbers: dict[str, Any],
    embedded: dict[str, Any],
    training: TrainingConfig,
) -> Any:
    import keras

    parts = [embedded[name] if name in embedded else numbers[name] for name in inputs]
    hidden = keras.layers.Concatenate(name="features")(parts) if len(parts) > 1 else parts[0]
    for i, units in enumerate(training.hidden_units):
        hidden = keras.layers.Dense(
            units,
            activation="relu",
            kernel_regularizer=_kernel_regularizer(training),
            name=f"dense_{i}",
        )(hidden)
        if training.dropout:
            hidden = keras.layers.Dropout(training.dropout, name=f"dropout_{i}")(hidden)
    return hidden


def build_model(
    family: str,
    transformed_spec: dict[str, Any],
    sizes: dict[str, int],
    num_classes: int,
    training: TrainingConfig,
) -> Any:
    """A compiled Keras model of `family` over the transformed features named in
    `transformed_spec`; `sizes` gives the number of ids of each integer feature."""
    import keras

    if family == "gbt":
        raise ValueError(
            "the gbt family is fitted by scikit-learn and compiled afterwards "
            "(mlops.trees.train_gbt); build_model builds the Keras families "
            f"{list(MODEL_FAMILIES)}"
        )
    if family == "cnn":  # image models (features.image): mlops/image_models.py
        from mlops.image_models import build_cnn

        return build_cnn(transformed_spec, num_classes, training)
    if family not in MODEL_FAMILIES:
        raise ValueError(f"training.model is {family!r}; expected one of {list(MODEL_FAMILIES)}")
    inputs, numbers, embedded = _inputs(transformed_spec, sizes, training, family != "linear")
    # Hidden layers are created before the output layer (see `_inputs` on creation order).
    if family == "dnn":
        hidden = _deep_hidden(inputs, numbers, embedded, training)
        probabilities = keras.layers.Dense(
            num_classes,
            activation="softmax",
            kernel_regularizer=_kernel_regularizer(training),
            name="probabilities",
        )(hidden)
    else:
        logits = _wide_logits(inputs, numbers, sizes, num_classes, training)
        if family == "wide_deep":
            hidden = _deep_hidden(inputs, numbers, embedded, training)
            deep_logits = keras.layers.Dense(
                num_classes, kernel_regularizer=_kernel_regularizer(training), name="deep_logits"
            )(hidden)
            logits = keras.layers.Add(name="logits")([logits, deep_logits])
        probabilities = keras.layers.Activation("softmax", name="probabilities")(logits)
    model = keras.Model(inputs=inputs, outputs=probabilities, name=family)
    model.compile(
        optimizer=keras.optimizers.Adam(training.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    return model


def weight_shapes(model: Any) -> list[list[Any]]:
    """[[weight path, shape], ...] of a built model: two models can exchange weights exactly
    when these are equal (what warm start checks)."""
    return [[weight.path, list(weight.shape)] for weight in model.weights]
