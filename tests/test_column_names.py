"""Any column name works: the config names columns exactly as the data does, the model uses an
internal identifier for each (`mlops.names.safe_name`), and users see the names as written."""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.config import CONFIG_DIR, ConfigError, FeatureConfig, load_config
from mlops.names import ColumnNameError, internal_names, safe_name
from tests.conftest import REPO, free_port

IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")

# ---- the name mapping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "internal"),
    [
        ("bill_length_mm", "bill_length_mm"),  # already an identifier: unchanged
        ("Sex", "Sex"),
        ("Culmen Length (mm)", "Culmen_Length_mm"),
        ("body.mass/g", "body_mass_g"),
        ("île", "ile"),
        ("1st flag", "f_1st_flag"),
        ("species label", "species_label"),
        ("_private", "private"),
        ("  padded  ", "padded"),
        ("東京", "u6771_u4eac"),
        ("%", "f_25"),
        ("tip%", "tip"),
    ],
)
def test_safe_name_maps_written_names_to_identifiers(written: str, internal: str) -> None:
    assert safe_name(written) == internal
    assert safe_name(written) == safe_name(written)  # deterministic


@pytest.mark.parametrize(
    "written",
    ["a\tb", "ünïcödé", "x" * 300, "é" * 80, "🐧 count", "0", "a-b-c", "Ω/kg", "..", "a" + "_" * 9],
)
def test_every_internal_name_is_a_tensorflow_identifier(written: str) -> None:
    internal = safe_name(written)
    assert IDENTIFIER.match(internal), internal
    assert len(internal) <= max(64, len(written) if IDENTIFIER.match(written) else 0)


def test_long_identifiers_are_kept_and_long_other_names_are_cut_apart() -> None:
    assert safe_name("a" * 100) == "a" * 100  # an identifier is never changed
    first, second = safe_name("é" * 70 + " one"), safe_name("é" * 70 + " two")
    assert len(first) <= 64 and first != second


@pytest.mark.parametrize("empty", ["", "   ", "\t"])
def test_empty_names_are_refused(empty: str) -> None:
    with pytest.raises(ColumnNameError, match="non-empty"):
        safe_name(empty)


@pytest.mark.parametrize(
    ("first", "second"),
    [("body mass", "body_mass"), ("a (b)", "a-b"), ("île", "ile"), ("x", " x ")],
)
def test_names_equal_after_sanitising_are_an_error_naming_both(first: str, second: str) -> None:
    with pytest.raises(ColumnNameError) as raised:
        internal_names([first, second])
    message = str(raised.value)
    assert repr(first) in message and repr(second) in message and "rename one" in message


def test_a_name_listed_twice_is_no_collision() -> None:
    assert internal_names(["a b", "a b", "c"]) == {"a b": "a_b", "c": "c"}


def _write_config(tmp: Path, features: dict[str, Any]) -> Path:
    raw = yaml.safe_load((CONFIG_DIR / "penguins.yaml").read_text())
    raw["features"] = features
    raw["evaluation"]["slices"] = []
    raw["fairness"]["sensitive_features"] = []
    path = tmp / "names.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_a_config_with_colliding_columns_fails_to_load_naming_file_and_both(tmp_path) -> None:
    path = _write_config(tmp_path, {"numeric": ["body mass"], "categorical": ["body_mass"]})
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert str(path) in message and "features:" in message
    assert "'body mass' and 'body_mass' would both be 'body_mass'" in message


def test_a_config_with_an_empty_column_name_fails_to_load(tmp_path) -> None:
    path = _write_config(tmp_path, {"numeric": ["  "], "categorical": ["island"]})
    with pytest.raises(ConfigError, match=r"features: .*non-empty text, got '  '"):
        load_config(path)


def test_crosses_that_would_share_a_transformed_name_are_an_error_naming_both() -> None:
    from components.transform import build_preprocessing_fn, transformed_names

    features = FeatureConfig(
        categorical=["a_x_b", "c", "a", "b_x_c"], crosses=[["a_x_b", "c"], ["a", "b_x_c"]]
    )
    with pytest.raises(
        ValueError, match=r"\['a_x_b', 'c'\] and \['a', 'b_x_c'\].*'cross_a_x_b_x_c'"
    ):
        transformed_names(features)
    with pytest.raises(ValueError, match="cross_a_x_b_x_c"):
        build_preprocessing_fn(features)


def test_a_column_named_like_another_columns_output_does_not_clash() -> None:
    from components.transform import transformed_names

    features = FeatureConfig(numeric=["Culmen Length (mm)", "Culmen_Length_mm_z"])
    outputs = transformed_names(features)
    assert outputs["Culmen_Length_mm_z"] == ["Culmen Length (mm)"]
    assert outputs["Culmen_Length_mm_z_z"] == ["Culmen_Length_mm_z"]


def test_tf_specs_use_internal_names_and_model_inputs_cross_over() -> None:
    from mlops.features import tf_example_spec, tf_input_signature, to_model_inputs

    features = FeatureConfig(numeric=["body.mass/g"], categorical=["île"])
    signature = tf_input_signature(features)
    assert sorted(signature) == ["body_mass_g", "ile"]
    assert signature["body_mass_g"].name == "body_mass_g"
    assert sorted(tf_example_spec(features)) == ["body_mass_g", "ile"]
    arrays = {"body.mass/g": [1.0], "île": ["Dream"], "species": ["x"]}
    assert to_model_inputs(arrays, features) == {"body_mass_g": [1.0], "ile": ["Dream"]}


def test_slices_are_reported_by_the_names_as_written() -> None:
    from components.evaluate import _slice_name

    written = {"f_1st_flag": "1st flag", "ile": "île"}
    assert _slice_name((("f_1st_flag", "male"),), written) == "1st flag=male"
    assert _slice_name((("ile", "Dream"), ("sex", "x")), written) == "île=Dream,sex=x"
    assert _slice_name((), written) == "overall"


def test_loaded_model_takes_inputs_by_the_names_as_written(tmp_path) -> None:
    """A real SavedModel whose signature has internal keys, called through LoadedModel."""
    import numpy as np
    import tensorflow as tf

    from mlops.serving.server import LoadedModel

    class Module(tf.Module):
        @tf.function(
            input_signature=[
                {
                    "body_mass_g": tf.TensorSpec([None], tf.float32, name="body_mass_g"),
                    "ile": tf.TensorSpec([None], tf.string, name="ile"),
                }
            ]
        )
        def serve(self, raw):
            dream = tf.cast(tf.equal(raw["ile"], "Dream"), tf.float32)
            mass = tf.where(tf.math.is_nan(raw["body_mass_g"]), 0.0, raw["body_mass_g"])
            return {"probabilities": tf.stack([dream, mass], axis=1)}

    module = Module()
    tf.saved_model.save(
        module, str(tmp_path), signatures={"serving_default": module.serve.get_concrete_function()}
    )
    loaded = tf.saved_model.load(str(tmp_path))
    names = {"body.mass/g": "body_mass_g", "île": "ile"}
    model = LoadedModel("1", str(tmp_path), loaded, loaded.signatures["serving_default"], {}, names)
    assert sorted(model.input_specs) == ["body.mass/g", "île"]
    model.check_features(FeatureConfig(numeric=["body.mass/g"], categorical=["île"]))
    arrays = {
        "body.mass/g": np.array([3.5, np.nan], np.float32),
        "île": np.array(["Dream", "Biscoe"], object),
    }
    keyword = model.predict_raw(arrays)["probabilities"]
    assert keyword.tolist() == [[1.0, 3.5], [0.0, 0.0]]
    assert model.enable_flat_call()  # the flat call maps the same names
    assert model.predict_raw(arrays)["probabilities"].tolist() == keyword.tolist()
    with pytest.raises(ValueError, match=r"missing model inputs \['île'\]"):
        model.predict_raw({"body.mass/g": arrays["body.mass/g"]})


def test_vertex_explanation_metadata_names_the_inputs_as_written() -> None:
    from mlops.attributions import vertex_explanation
    from tests.conftest import config_in

    config = config_in(Path("/unused"), "penguins")
    config = config.with_overrides(
        features={"numeric": ["body.mass/g"], "categorical": ["île"]},
        evaluation={},
        fairness={},
    )
    metadata, _ = vertex_explanation(config, {"body.mass/g": 4000.0, "île": "Dream"})
    assert sorted(metadata.inputs) == ["body.mass/g", "île"]
    assert list(metadata.inputs["île"].input_baselines) == ["Dream"]


# ---- end to end: the CLI on penguins with awkward column names -------------------------------

# Penguin columns renamed as a spreadsheet might have them; "Culmen_Length_mm_z" is also the
# internal name of the z-scored "Culmen Length (mm)".
AWKWARD = {
    "species": "species label",
    "island": "île",
    "bill_length_mm": "Culmen Length (mm)",
    "bill_depth_mm": "Culmen_Length_mm_z",
    "flipper_length_mm": "flipper length [mm]",
    "body_mass_g": "body.mass/g",
    "sex": "1st flag",
    "year": "année",
}


def awkward_penguins(tmp: Path) -> Path:
    """The penguins CSV with the awkward header, and a config naming those columns."""
    import palmerpenguins

    data = tmp / "awkward penguins.csv"
    palmerpenguins.load_penguins().rename(columns=AWKWARD).to_csv(data, index=False)
    raw = yaml.safe_load((CONFIG_DIR / "penguins.yaml").read_text())
    raw["data"].update(source=str(data), label=AWKWARD["species"], time_column=AWKWARD["year"])
    features = raw["features"]
    features["numeric"] = [AWKWARD[name] for name in features["numeric"]]
    features["categorical"] = [AWKWARD[name] for name in features["categorical"]]
    features["bucketize"] = {AWKWARD[k]: v for k, v in features["bucketize"].items()}
    features["crosses"] = [[AWKWARD[n] for n in cross] for cross in features["crosses"]]
    raw["evaluation"]["slices"] = [AWKWARD[n] for n in raw["evaluation"]["slices"]]
    raw["fairness"]["sensitive_features"] = [AWKWARD["sex"]]
    raw["local"] = {"root": str(tmp / "root")}
    path = tmp / "awkward.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _post(port: int, route: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        data = json.dumps(body).encode("utf-8")
        conn.request("POST", route, data, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def awkward_run(tmp_path_factory):
    from pipelines.cli import main as cli_main

    tmp = tmp_path_factory.mktemp("awkward")
    config_file = awkward_penguins(tmp)
    code = cli_main(["run", "--config", str(config_file)])
    (run_json,) = (tmp / "root" / "runs").glob("*/run.json")
    manifest = json.loads(run_json.read_text())
    assert code == 0, manifest
    return config_file, manifest, run_json.parent


@pytest.mark.slow
def test_a_run_on_awkward_column_names_trains_evaluates_and_registers(awkward_run) -> None:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from mlops.registry import CHAMPION, LocalModelRegistry

    config_file, manifest, run_dir = awkward_run
    config = load_config(config_file)
    assert manifest["status"] == "SUCCEEDED", manifest
    assert manifest["blessed"] is True and manifest["metrics"]["accuracy"] >= 0.9
    assert manifest["registered_version"] == 1

    # users see the names as written: statistics, slices, attributions, the report
    (stats_file,) = [p for p in run_dir.rglob("FeatureStats.pb") if p.parent.name == "statistics"]
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(stats_file.read_bytes())
    shown = {feature.path.step[0] for feature in stats.datasets[0].features}
    assert set(AWKWARD.values()) <= shown
    (metrics_file,) = run_dir.rglob("metrics.json")
    metrics = json.loads(metrics_file.read_text())["metrics"]
    assert {"1st flag=female", "1st flag=male", "île=Dream"} <= set(metrics)
    report = Path(manifest["report"]).read_text(encoding="utf-8")
    assert "Culmen Length (mm)" in report and "body.mass/g" in report

    registry = LocalModelRegistry(Path(config.local.root) / "registry")
    champion = registry.get(config.name, alias=CHAMPION)
    info = json.loads(next(champion.model_dir.rglob("model_info.json")).read_text())
    assert info["model_input_names"]["1st flag"] == "f_1st_flag"
    assert info["raw_features"]["categorical"] == ["île", "1st flag"]


@pytest.mark.slow
def test_the_server_answers_requests_keyed_by_the_names_as_written(awkward_run, tmp_path) -> None:
    config_file, _, _ = awkward_run
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--config", str(config_file)]
    command += ["--version", "champion", "--port", str(port)]
    output = tmp_path / "server.out"
    with open(output, "wb") as sink:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, output.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, output.read_text(errors="replace")[-3000:]
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        instance = {
            "Culmen Length (mm)": 39.1,
            "Culmen_Length_mm_z": 18.7,
            "flipper length [mm]": 181,
            "body.mass/g": 3750,
            "année": 2007,
            "île": "Torgersen",
            "1st flag": "male",
        }
        missing = {name: None for name in instance}
        status, body = _post(port, "/predict", {"instances": [instance, missing]})
        assert status == 200, body
        first, second = body["predictions"]
        assert first["label"] == "Adelie"
        assert math.isclose(sum(second["probabilities"].values()), 1.0, rel_tol=1e-4)

        status, body = _post(port, "/explain", {"instances": [instance]})
        assert status == 200, body
        attributions = body["explanations"][0]["attributions"][0]["featureAttributions"]
        assert set(attributions) == set(instance)

        # internal names are not part of the contract: a request using them names what is wanted
        internal = {safe_name(name): value for name, value in instance.items()}
        status, body = _post(port, "/predict", {"instances": [internal]})
        assert status == 400 and "'Culmen Length (mm)'" in body["error"], body
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_batch_prediction_reads_a_csv_with_awkward_headers(awkward_run, tmp_path) -> None:
    import pandas as pd

    from components.batch_predict import run_batch_predict
    from mlops.registry import CHAMPION, LocalModelRegistry

    config_file, _, _ = awkward_run
    config = load_config(config_file)
    rows = pd.read_csv(config.data.source).head(20)
    rows.insert(0, "row id", range(20))
    source = tmp_path / "to score.csv"
    rows.to_csv(source, index=False)
    champion = LocalModelRegistry(Path(config.local.root) / "registry").get(
        config.name, alias=CHAMPION
    )
    summary = run_batch_predict(config, champion.model_dir, str(source), tmp_path / "out", "row id")
    assert summary["rows"] == 20
    predictions = [
        json.loads(line)
        for path in sorted((tmp_path / "out").glob("predictions-*"))
        for line in path.read_text().splitlines()
    ]
    assert sorted(p["row id"] for p in predictions) == list(range(20))
    assert {p["label"] for p in predictions} <= {"Adelie", "Chinstrap", "Gentoo"}
