"""The image use case: image sources, config checks, the decode inside the transform graph,
augmentation only in training, image requests to the server; and the digits chain end to end
(ingest -> validate -> transform -> train with transfer learning -> evaluate -> serve a PNG)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from mlops.config import ConfigError, PipelineConfig, load_config
from mlops.images import (
    ImageError,
    content_keys,
    encode_png,
    load_digits_frame,
    read_image_folder,
)
from tests.conftest import REPO

DIGITS = REPO / "configs" / "digits.yaml"


def _image_config(**overrides):
    from mlops.config import ImageConfig

    return ImageConfig(**{"height": 8, "width": 8, "channels": 1, **overrides})


def _write_folder(root: Path) -> dict[str, np.ndarray]:
    """Two classes of 8x8 grey PNGs; returns the pixels by file name."""
    rng = np.random.default_rng(0)
    written = {}
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            (root / label / f"{i}.png").write_bytes(encode_png(pixels))
            written[f"{label}/{i}.png"] = pixels
    return written


def test_an_image_folder_becomes_rows_of_bytes_labelled_by_sub_folder(tmp_path: Path) -> None:
    import io

    from PIL import Image

    written = _write_folder(tmp_path)
    frame = read_image_folder(str(tmp_path), "animal", _image_config())
    assert list(frame.columns) == ["image", "animal"]
    assert frame["animal"].tolist() == ["cat"] * 3 + ["dog"] * 3
    first = np.asarray(Image.open(io.BytesIO(frame["image"][0])))
    np.testing.assert_array_equal(first, written["cat/0.png"])
    # the hash split keys on content: identical bytes give identical keys, others differ
    keys = content_keys(frame)["image"]
    assert keys.str.len().eq(64).all() and keys.nunique() == 6


def test_a_bad_image_stops_ingest_naming_the_file(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageError, match=r"dog/broken\.png: not a decodable PNG or JPEG"):
        read_image_folder(str(tmp_path), "animal", _image_config())
    (tmp_path / "dog" / "broken.png").write_bytes(encode_png(np.zeros((8, 9), np.uint8)))
    with pytest.raises(ImageError, match=r"broken\.png: image is 9x8 .* expects 8x8"):
        read_image_folder(str(tmp_path), "animal", _image_config())
    (tmp_path / "dog" / "broken.png").write_bytes(encode_png(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(ImageError, match=r"broken\.png: image mode RGB .*image.channels 1"):
        read_image_folder(str(tmp_path), "animal", _image_config())
    (tmp_path / "dog" / "broken.png").unlink()
    (tmp_path / "stray.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"files \['stray.png'\] sit beside the class folders"):
        read_image_folder(str(tmp_path), "animal", _image_config())


def test_packaged_digits_are_8x8_pngs_of_ten_classes() -> None:
    frame = load_digits_frame("digit", _image_config())
    assert len(frame) == 1797 and sorted(frame["digit"].unique()) == list(range(10))
    assert frame["image"][0].startswith(b"\x89PNG")
    with pytest.raises(ImageError, match="set features.image height: 8, width: 8"):
        load_digits_frame("digit", _image_config(height=16))


def test_config_refuses_tabular_features_beside_an_image_and_other_families(
    tmp_path: Path,
) -> None:
    import yaml

    raw = yaml.safe_load(DIGITS.read_text())
    cases = [
        ({"features": {**raw["features"], "numeric": ["x"]}}, "features.image .* is the only"),
        ({"training": {**raw["training"], "model": "dnn"}}, "features.image needs training.model"),
        ({"evaluation": {"slices": ["image"]}}, "slices names the image column"),
    ]
    for change, message in cases:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**raw, **change}))
        with pytest.raises(ConfigError, match=message):
            load_config(path)
    penguins = yaml.safe_load((REPO / "configs" / "penguins.yaml").read_text())
    penguins["training"]["model"] = "cnn"
    path.write_text(yaml.safe_dump(penguins))
    with pytest.raises(ConfigError, match="training.model cnn needs features.image"):
        load_config(path)


def test_transform_decode_scales_pixels_to_unit_floats_and_resizes() -> None:
    import tensorflow as tf

    from mlops.images import decode_images

    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    out = decode_images(tf.constant([encode_png(pixels)]), _image_config()).numpy()
    assert out.shape == (1, 8, 8, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, :, 0], pixels / 255.0, atol=1e-6)
    # a larger RGB image is converted and resized to the configured grey 8x8
    bigger = decode_images(
        tf.constant([encode_png(np.zeros((16, 12, 3), np.uint8))]), _image_config()
    )
    assert bigger.shape == (1, 8, 8, 1)


def test_augmentation_changes_images_only_in_training() -> None:
    import keras

    from mlops.config import TrainingConfig
    from mlops.image_models import build_cnn, with_augmentation

    training = TrainingConfig(model="cnn", seed=1)
    spec = {"image_pixels": np.zeros((1, 8, 8, 1), np.float32)}
    model = build_cnn(spec, 10, training)
    trainer = with_augmentation(model, _image_config().augment, 1, 0.01)
    images = {"image_pixels": np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)}
    served = model(images, training=False).numpy()
    np.testing.assert_allclose(trainer(images, training=False).numpy(), served, atol=1e-6)
    assert not np.allclose(trainer(images, training=True).numpy(), served, atol=1e-3)
    # the exported model holds no random layer; the trainer does
    assert not [layer for layer in model.layers if layer.name.startswith("aug_")]
    assert [layer.name for layer in trainer.layers if layer.name.startswith("aug_")] == [
        "aug_rotation",
        "aug_translation",
        "aug_zoom",
    ]
    keras.backend.clear_session()


def _request(*images: object) -> bytes:
    return json.dumps({"instances": [{"image": image} for image in images]}).encode()


def test_server_requests_take_base64_images_and_reject_bad_ones() -> None:
    from mlops.serving.request import RequestError, parse_request

    features = load_config(DIGITS).features
    png = encode_png(np.full((8, 8), 200, np.uint8))
    _, arrays = parse_request(_request({"b64": base64.b64encode(png).decode()}), None, features, 10)
    assert arrays["image"].tolist() == [png]
    bad = [
        ({"b64": "%%%"}, "instances[1].image: 'b64' is not valid base64"),
        ({"b64": base64.b64encode(b"GIF89a junk").decode()}, "instances[1].image: not a decodable"),
        ("iVBORw0KGgo=", 'instances[1].image: an image is sent as {"b64"'),
    ]
    good = {"b64": base64.b64encode(png).decode()}
    for value, message in bad:
        with pytest.raises(RequestError) as caught:
            parse_request(_request(good, value), None, features, 10)
        assert caught.value.status == 400 and message in caught.value.message


# --- the digits chain, end to end in one process --------------------------------------------


@pytest.fixture(scope="module")
def digits_chain(tmp_path_factory):
    """Ingest -> validate -> transform -> train (pretrain, fine-tune, from-scratch comparison)
    -> evaluate, on the packaged digits with few epochs."""
    from components.evaluate import run_evaluate
    from components.explain import run_explain
    from components.ingest import run_ingest
    from components.train import run_train
    from components.transform import run_transform
    from components.validate import run_data_validation

    tmp = tmp_path_factory.mktemp("digits")
    config = load_config(DIGITS)
    image = config.features.image.model_copy(
        update={"pretrain": config.features.image.pretrain.model_copy(update={"epochs": 3})}
    )
    config = config.with_overrides(
        features={**config.features.model_dump(), "image": image.model_dump()},
        training={**config.training.model_dump(), "epochs": 12},
        local={"root": str(tmp / "root")},
    )
    data = tmp / "data"
    ingest = run_ingest(config, data)
    validation = run_data_validation(config, data, tmp / "stats", tmp / "schema", tmp / "anom")
    run_transform(config, data, tmp / "transform")
    train = run_train(config, data, tmp / "transform", tmp / "model")
    evaluation = run_evaluate(config, data, tmp / "model", tmp / "evaluation")
    explain = run_explain(config, data, tmp / "model", tmp / "explanation")
    return config, tmp, ingest, validation, train, evaluation, explain


@pytest.mark.slow
def test_digits_reach_the_success_criterion_with_transfer_learning(digits_chain) -> None:
    config, tmp, ingest, validation, train, evaluation, explain = digits_chain
    assert sum(ingest["rows"].values()) == 1797 and ingest["columns"]["image"] == "binary"
    assert validation["blocking"] == [] and validation["readiness"]["test_rows_in_train"] == 0
    assert train["model_family"] == "cnn"
    transfer = train["transfer"]
    assert transfer["source_task"]["task"] == "rotation"
    assert transfer["source_task"]["eval_accuracy"] > 2 * transfer["source_task"]["chance_accuracy"]
    assert transfer["fine_tuned_eval_accuracy"] == pytest.approx(train["eval_accuracy"])
    assert 0 < transfer["scratch"]["eval_accuracy"] <= 1
    overall = evaluation["metrics"]["overall"]
    assert overall["accuracy"] >= 0.95, overall
    assert evaluation["blessed"], evaluation["failures"]
    assert evaluation["baselines"]["linear model"]["accuracy"] > 0.8  # pixels carry the signal
    assert explain["method"] == "none" and "image models" in explain["skipped"]


@pytest.mark.slow
def test_a_png_sent_to_the_server_is_read_like_in_training(digits_chain) -> None:
    import pandas as pd

    from mlops.serving.request import parse_request
    from mlops.serving.server import _warm_up, load_model

    config, tmp, *_ = digits_chain
    model = load_model(tmp / "model")
    model.check_features(config.features)
    _warm_up(model, config.features)
    test = pd.read_parquet(tmp / "data" / "test.parquet").head(20)
    body = _request(*({"b64": base64.b64encode(b).decode()} for b in test["image"]))
    _, arrays = parse_request(body, "application/json", config.features, 100)
    predictions = model.predict(arrays)
    labels = [p["label"] for p in predictions]
    assert sum(a == str(b) for a, b in zip(labels, test["digit"], strict=True)) >= 18
    # the same rows as tf.Examples through serving_tf_example (what TFMA calls) agree
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp / "model"))
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b]))}
            )
        ).SerializeToString()
        for b in test["image"]
    ]
    by_example = loaded.signatures["serving_tf_example"](examples=tf.constant(examples))
    np.testing.assert_allclose(
        by_example["probabilities"].numpy(),
        np.array(
            [[p["probabilities"][c] for c in sorted(p["probabilities"])] for p in predictions]
        ),
        atol=1e-5,
    )


def test_digits_compiles_for_vertex_with_the_custom_training_job(tmp_path: Path) -> None:
    from pipelines.vertex import compile_pipeline
    from tests.conftest import on_vertex

    config = on_vertex(load_config(DIGITS))
    spec = json.loads(
        compile_pipeline(config, "training", "vertex", tmp_path / "d.json").read_text()
    )
    train = spec["deploymentSpec"]["executors"][spec["components"]["comp-train"]["executorLabel"]]
    assert "google_cloud_pipeline_components" in " ".join(train["container"]["command"])
    assert "CustomJob" in train["container"]["args"]
    (pool,) = spec["components"]["comp-train"]["inputDefinitions"]["parameters"][
        "worker_pool_specs"
    ]["defaultValue"]
    assert pool["container_spec"]["image_uri"] == config.vertex.image
    (condition,) = [n for n in spec["root"]["dag"]["tasks"] if n.startswith("condition")]
    assert "register-vertex" in spec["components"][f"comp-{condition}"]["dag"]["tasks"]
    default = spec["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"]
    assert PipelineConfig.from_json(default).features.image.column == "image"


@pytest.mark.slow
def test_monitoring_compares_served_images_by_content(digits_chain) -> None:
    import pandas as pd

    from mlops.artifacts import SCHEMA_FILE, STATS_FILE
    from mlops.monitoring import run_monitoring

    config, tmp, *_ = digits_chain
    test = pd.read_parquet(tmp / "data" / "test.parquet")

    def monitor(images: list[bytes], labels: list[int], name: str) -> dict:
        # as the request log keeps them: instances as received, here with the true label
        logged = pd.DataFrame(
            {"image": [{"b64": base64.b64encode(b).decode()} for b in images], "digit": labels}
        )
        return run_monitoring(
            config,
            training_statistics=str(tmp / "stats" / STATS_FILE),
            schema=str(tmp / "schema" / SCHEMA_FILE),
            current=logged,
            model_dir=str(tmp / "model"),
            output_dir=str(tmp / name),
        )

    normal = monitor(list(test["image"]), list(test["digit"]), "normal")
    assert not [f for f in normal["findings"] if f["feature"] == "image"]
    assert normal["quality"]["accuracy"] >= 0.95  # the model read the logged images
    repeated = monitor([test["image"][0]] * 60, [test["digit"][0]] * 60, "repeated")
    (skew,) = [r for r in repeated["skew"] if r["feature"] == "image"]
    assert skew["value"] > 0.9  # one image sent over and over: L-infinity of content hashes


@pytest.mark.slow
def test_validation_of_images_on_dataflow_settings_summarises_in_process(digits_chain) -> None:
    from components.validate import run_data_validation

    config, tmp, *_ = digits_chain
    # the Beam statistics have no binary column type: image splits never go there
    on_dataflow = config.with_overrides(
        beam_args=["--runner=DataflowRunner", "--project=p", "--temp_location=gs://b/t"]
    )
    out = tmp / "dataflow-validation"
    summary = run_data_validation(on_dataflow, tmp / "data", out / "s", out / "sc", out / "a")
    assert summary["blocking"] == [] and summary["readiness"]["missing_rate"] == {"image": 0.0}


@pytest.mark.slow
@pytest.mark.timeout(2400)  # a whole run, on a busy machine
def test_digits_run_through_the_local_pipeline(tmp_path: Path) -> None:
    """The one pipeline definition on images through kfp.local (the steps as KFP tasks, warm
    worker and all), with the config's own epochs: blessed, registered, explain skipped with its
    reason, the transfer-learning record in the report."""
    from pipelines.local import run_training_locally
    from tests.conftest import config_in

    result = run_training_locally(config_in(tmp_path, "digits"))
    manifest = result.manifest
    assert manifest["status"] == "SUCCEEDED", manifest
    assert manifest["metrics"]["accuracy"] >= 0.95 and manifest["blessed"] is True
    assert manifest["registered_version"] == 1
    assert sum(manifest["data"].values()) == 1797
    (explanations,) = result.run_dir.rglob("explanations.json")
    assert "image models" in json.loads(explanations.read_text())["skipped"]
    report = Path(manifest["report"]).read_text()
    assert "Transfer learning" in report and "Gain of transfer over scratch" in report
