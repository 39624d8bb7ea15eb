from __future__ import annotations

from pathlib import Path

import pytest

from mlops.config import CONFIG_DIR, ConfigError, PipelineConfig, load_config, local_path
from tests.conftest import assert_load_refused


@pytest.mark.parametrize("name", ["penguins", "taxi"])
def test_shipped_configs_load(name: str) -> None:
    config = load_config(CONFIG_DIR / f"{name}.yaml")
    assert config.name == name
    assert config.data.label not in config.features.raw_features
    # The config survives the trip through the pipeline's JSON parameter unchanged.
    assert PipelineConfig.from_json(config.to_json()) == config


def test_taxi_excludes_the_label_leak_and_splits_by_time() -> None:
    config = load_config(CONFIG_DIR / "taxi.yaml")
    assert "tips" in config.data.exclude_columns
    assert config.data.split.method == "time"
    assert config.data.split.time_column == "trip_start_timestamp"
    # Relative paths stay as written (relative to the repo root) and resolve where used.
    assert config.data.source == "data/chicago_taxi/big_tipper.csv"
    assert Path(local_path(config.data.source)).is_file()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def _penguins_with(replace: str, by: str) -> str:
    text = (CONFIG_DIR / "penguins.yaml").read_text()
    assert replace in text
    return text.replace(replace, by)


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("method: hash", "method: random", ["data.split.method", "'hash' or 'time'", "'random'"]),
        ("epochs: 60", "epochs: -3", ["training.epochs", "greater than or equal to 1", "-3"]),
        ("batch_size: 32", "batch_sise: 32", ["training.batch_sise", "Extra inputs"]),
        ("body_mass_g: 4", "island: 4", ["features.bucketize names 'island'"]),
        ("slices: [sex, island]", "slices: [colour]", ["evaluation.slices names 'colour'"]),
        (
            "metric: accuracy, lower",
            "metric: f1, lower",
            ["evaluation.thresholds.0.metric", "'f1'"],
        ),
        ("name: penguins", "name: Penguins Model", ["name", "should match pattern"]),
    ],
)
def test_bad_config_errors_name_file_key_and_value(
    tmp_path: Path, replace: str, by: str, expected: list[str]
) -> None:
    path = _write(tmp_path, _penguins_with(replace, by))
    assert_load_refused(path, expected)


def test_missing_config_file_lists_known_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="penguins.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "name: [unclosed"))


def test_feature_may_not_be_the_label(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _penguins_with("categorical: [island, sex]", "categorical: [island, sex, species]"),
    )
    with pytest.raises(ConfigError, match="data.label 'species' must not also be a feature"):
        load_config(path)


def test_accelerator_type_and_count_go_together(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _penguins_with(
            "machine_type: n1-standard-4", "machine_type: n1-standard-4\n    accelerator_count: 2"
        ),
    )
    with pytest.raises(ConfigError, match="accelerator_type and accelerator_count"):
        load_config(path)
