"""Typed pipeline configuration: one YAML file per use case, validated once.

The config enters a pipeline as a JSON string parameter, so a compiled template can be rerun with
other values; every step parses it back with `PipelineConfig.from_json`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "penguins.yaml"

Fraction = Annotated[float, Field(gt=0, lt=1)]


class ConfigError(ValueError):
    """A config file is invalid; the message names the file, the key, the value and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Strict):
    """How rows are split into train/eval/test, deterministically."""

    method: Literal["hash", "time"] = "hash"
    # hash: columns whose values are hashed (empty = every column of the row).
    key_columns: list[str] = []
    # time: rows sorted by this column; the oldest go to train, the newest to test.
    time_column: str | None = None
    eval_fraction: Fraction = 0.15
    test_fraction: Fraction = 0.15

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.method == "time" and not self.time_column:
            raise ValueError("split.method 'time' needs split.time_column")
        if self.eval_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "split.eval_fraction + split.test_fraction must leave >= 10% for train"
            )
        return self


# SQLAlchemy dialects a data.source URL may name ("postgresql+psycopg2://..." names a driver too).
SQL_DIALECTS = frozenset({"sqlite", "postgresql", "mysql", "mariadb", "mssql", "oracle"})
_BQ_PROJECT = r"(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]"


def beam_runner_name(beam_args: list[str]) -> str:
    """The `--runner` in Beam arguments ("" when none), read without importing Beam (a local
    step should not pay Beam's import to learn that it runs in-process)."""
    runner = ""
    for index, arg in enumerate(beam_args):
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
        elif arg == "--runner" and index + 1 < len(beam_args):
            runner = beam_args[index + 1]
    return runner


def on_dataflow(beam_args: list[str]) -> bool:
    """Whether Beam steps with these arguments run on Dataflow (their data must then be where
    Dataflow's workers reach it, and the work may outgrow one machine)."""
    return "Dataflow" in beam_runner_name(beam_args)


def database_kind(source: str) -> Literal["bigquery", "sql"] | None:
    """ "bigquery" for a bq:// source, "sql" for a SQLAlchemy URL (sqlite:///..., postgresql://
    ...), None for a file, a folder or a packaged data set."""
    if source.startswith("bq://"):
        return "bigquery"
    scheme = source.split("://", 1)[0] if "://" in source else ""
    return "sql" if scheme.split("+", 1)[0].lower() in SQL_DIALECTS else None


def bigquery_parts(source: str) -> tuple[str, str | None, str | None]:
    """(project, dataset, table) of bq://PROJECT.DATASET.TABLE, or (project, None, None) for
    bq://PROJECT (a billing project for data.query). Raises ValueError naming what to fix."""
    path = source.removeprefix("bq://")
    if re.fullmatch(_BQ_PROJECT, path):
        return path, None, None
    parts = path.rsplit(".", 2)
    if (
        len(parts) == 3
        and re.fullmatch(_BQ_PROJECT, parts[0])
        and re.fullmatch(r"\w{1,1024}", parts[1])
        and parts[2].strip()
    ):
        return parts[0], parts[1], parts[2]
    raise ValueError(
        f"data.source {source!r} is not bq://PROJECT.DATASET.TABLE (a table) nor bq://PROJECT "
        "(the project that runs data.query); for example bq://my-project.my_dataset.my_table"
    )


def _is_select(query: str) -> bool:
    """Whether a query's first keyword (after comments) reads rows: SELECT, WITH or "(". Ingest
    never commits, but a DELETE or DDL statement has no business in a config."""
    text = re.sub(r"(--[^\n]*(\n|$)|/\*.*?\*/|\s)+", " ", query, flags=re.S).strip()
    return bool(re.match(r"(\(|select\b|with\b)", text, flags=re.I))


class BigQueryReadConfig(_Strict):
    """How a bq:// source is read."""

    # Ingest reads through the BigQuery Storage Read API (faster; needs the
    # bigquery.readsessions.create permission); false reads result pages over REST.
    storage_api: bool = True
    # The Beam read on Dataflow (mlops/databases.beam_bigquery_batches): DIRECT_READ (Storage Read API) or
    # EXPORT (Avro files staged in gcs_location, else the pipeline's --temp_location).
    beam_method: Literal["DIRECT_READ", "EXPORT"] = "DIRECT_READ"
    gcs_location: str | None = None
    # PROJECT.DATASET where the Beam read stages a query's results (else Beam creates a
    # temporary dataset in the billing project and deletes it after the read).
    temp_dataset: str | None = None

    @field_validator("gcs_location")
    @classmethod
    def _gcs(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("gs://"):
            raise ValueError(f"must be a gs:// folder (got {value!r})")
        return value

    @field_validator("temp_dataset")
    @classmethod
    def _dataset(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(rf"{_BQ_PROJECT}\.\w{{1,1024}}", value):
            raise ValueError(
                f"must be PROJECT.DATASET, e.g. my-project.beam_staging (got {value!r})"
            )
        return value


class DataConfig(_Strict):
    # A path or URI (file, gs://) to CSV, JSON Lines or Parquet, or "palmerpenguins" for the
    # dataset that ships in the palmerpenguins package. With features.image: a local folder of
    # images with one sub-folder per class (PNG/JPEG; the label is the folder's name), or
    # "sklearn-digits" for the 8x8 digit images that ship in scikit-learn (mlops/images.py).
    # Databases (mlops/databases.py): bq://PROJECT.DATASET.TABLE (a BigQuery table), bq://PROJECT
    # with data.query (the project that runs and pays for the query), or a SQLAlchemy URL
    # (sqlite:///data/rows.db, relative to the repo root; postgresql://..., mysql+pymysql://...)
    # with data.table or data.query.
    source: str
    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    # A SQL query whose result is the data (BigQuery GoogleSQL, or the database's own SQL).
    query: str | None = None
    # A table of the SQL database in data.source ("schema.table" works); a BigQuery table goes
    # into data.source instead.
    table: str | None = None
    # The environment variable that holds the SQL database's password, read when ingest connects
    # (a password written into data.source is refused: the config is copied into run.json,
    # ingest.json and Vertex pipeline parameters). On Vertex, set it on the step from Secret
    # Manager, or use IAM database authentication / a .pgpass file instead.
    password_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    # Rows per record batch read from a database (SQL fetch size, BigQuery page size).
    batch_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 50_000
    bigquery: BigQueryReadConfig = BigQueryReadConfig()
    label: str
    # Columns dropped at ingest, e.g. a label leak.
    exclude_columns: list[str] = []
    # The column that orders rows in time (time splits, evaluation over time, drift windows).
    time_column: str | None = None
    # Cells that mean "missing" (besides an empty cell), as R, pandas and spreadsheets write them.
    na_values: list[str] = ["NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "#N/A"]
    # Ingest fails if more than this fraction of rows cannot be parsed.
    max_bad_row_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # Rows whose label is empty: "drop" counts them as bad rows; "keep" writes them to
    # unlabeled.parquet beside the splits (never into eval/test), for self-training.
    unlabeled: Literal["drop", "keep"] = "drop"
    split: SplitConfig = SplitConfig()

    @model_validator(mode="after")
    def _check_database(self) -> DataConfig:
        kind = database_kind(self.source)
        if kind is None:
            used = [
                name
                for name in ("query", "table", "password_env")
                if getattr(self, name) is not None
            ]
            if used:
                raise ValueError(
                    f"data.{used[0]} applies to database sources (bq://..., sqlite:///..., "
                    f"postgresql://...); data.source {self.source!r} is not one: remove "
                    f"data.{used[0]} or point data.source at the database"
                )
            return self
        if self.format != "auto":
            raise ValueError(
                f"data.format {self.format!r} applies to files; data.source {self.source!r} is "
                "a database: remove data.format"
            )
        if self.query is not None and not _is_select(self.query):
            raise ValueError(
                f"data.query must be a SELECT (or WITH ... SELECT) whose rows are the data; got "
                f"{' '.join(self.query.split())[:60]!r}"
            )
        if kind == "bigquery":
            _, dataset, _ = bigquery_parts(self.source)
            if self.password_env is not None:
                raise ValueError(
                    "data.password_env is for SQL databases; BigQuery signs in with Google "
                    "credentials (gcloud auth application-default login, or the service account)"
                )
            if self.table is not None:
                raise ValueError(
                    "data.table is for SQL databases; name a BigQuery table in data.source: "
                    "bq://PROJECT.DATASET.TABLE"
                )
            if dataset is None and self.query is None:
                raise ValueError(
                    f"data.source {self.source!r} names a project only: add data.query, or name "
                    "a table as bq://PROJECT.DATASET.TABLE"
                )
            if dataset is not None and self.query is not None:
                raise ValueError(
                    f"data.source {self.source!r} names a table and data.query is set: give one; "
                    "with a query, data.source is bq://PROJECT (the project that runs it)"
                )
            return self
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            password = make_url(self.source).password
        except (ArgumentError, ValueError):
            password = None  # not a URL: reading it says what is wrong
        if password is not None:
            raise ValueError(
                "data.source has a password in it, and the config is copied into run.json, "
                "ingest.json and Vertex pipeline parameters: remove it from the URL and set "
                "data.password_env to the name of an environment variable that holds it (or use "
                ".pgpass / IAM database authentication)"
            )
        if (self.table is None) == (self.query is None):
            raise ValueError(
                f"data.source {self.source!r} is a SQL database: give data.table (a table name) "
                "or data.query (a SELECT), exactly one of them"
            )
        if self.table is not None and not self.table.strip():
            raise ValueError("data.table is empty; name a table of the database")
        return self


class AugmentConfig(_Strict):
    """Random Keras preprocessing layers applied to training batches only (never at eval or
    serving): rotation as a fraction of a full turn, translation and zoom as fractions of the
    image's size (0 turns one off). No flips: they change what many images mean (digits)."""

    rotation: Annotated[float, Field(ge=0, lt=0.5)] = 0.05
    translation: Annotated[float, Field(ge=0, lt=0.5)] = 0.1
    zoom: Annotated[float, Field(ge=0, lt=0.5)] = 0.1


class PretrainConfig(_Strict):
    """Transfer learning without downloaded weights: the conv base is first trained on a source
    task built from the train images themselves (`rotation`: which of 4 quarter turns was
    applied, a self-supervised pretext task), then fine-tuned on the label: `frozen_epochs` with
    the base frozen, then the whole net at `fine_tune_lr_factor` times the learning rate."""

    task: Literal["rotation", "none"] = "rotation"
    epochs: Annotated[int, Field(ge=1)] = 5
    frozen_epochs: Annotated[int, Field(ge=0)] = 2
    fine_tune_lr_factor: Annotated[float, Field(gt=0, le=1)] = 0.5
    # Also train the same net from scratch for the same epochs and record both accuracies.
    compare_with_scratch: bool = True


class ImageConfig(_Strict):
    """One image feature: a column of encoded image bytes (PNG/JPEG), decoded, resized to
    height x width x channels and scaled to [0, 1] inside the TFT graph, so the served model
    takes the raw bytes."""

    column: Annotated[str, Field(min_length=1)] = "image"
    height: Annotated[int, Field(ge=4, le=1024)]
    width: Annotated[int, Field(ge=4, le=1024)]
    channels: Literal[1, 3] = 1
    augment: AugmentConfig = AugmentConfig()
    pretrain: PretrainConfig = PretrainConfig()


class FeatureConfig(_Strict):
    """Feature engineering, applied by TensorFlow Transform (train and serving alike)."""

    # An image feature (see ImageConfig); it is the model's only input (numeric and categorical
    # features beside it are refused).
    image: ImageConfig | None = None

    numeric: list[str] = []
    categorical: list[str] = []
    # Numeric features also bucketised into this many quantile buckets.
    bucketize: dict[str, Annotated[int, Field(ge=2, le=1000)]] = {}
    # Each cross is a list of categorical or bucketised features hashed together.
    crosses: list[Annotated[list[str], Field(min_length=2)]] = []
    cross_hash_buckets: Annotated[int, Field(ge=2)] = 64
    # Categorical values seen fewer times than this map to the out-of-vocabulary bucket.
    vocab_frequency_threshold: Annotated[int, Field(ge=1)] = 1
    oov_buckets: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _check(self) -> FeatureConfig:
        if self.image is not None:
            if self.numeric or self.categorical or self.bucketize or self.crosses:
                raise ValueError(
                    f"features.image ({self.image.column!r}) is the only input of an image "
                    "model; remove features.numeric, categorical, bucketize and crosses (images "
                    "beside tabular features are not supported)"
                )
            return self
        if not self.numeric and not self.categorical:
            raise ValueError(
                "features needs at least one numeric or categorical feature (or features.image)"
            )
        overlap = set(self.numeric) & set(self.categorical)
        if overlap:
            raise ValueError(f"features {sorted(overlap)} are both numeric and categorical")
        for name in self.bucketize:
            if name not in self.numeric:
                raise ValueError(
                    f"features.bucketize names '{name}', which is not in features.numeric"
                )
        # Any column name works; two that would be one inside the model are an error here.
        from mlops.names import internal_names

        internal_names(self.raw_features)
        crossable = set(self.categorical) | set(self.bucketize)
        for cross in self.crosses:
            for name in cross:
                if name not in crossable:
                    raise ValueError(
                        f"features.crosses names '{name}'; allowed: categorical or bucketized "
                        f"features {sorted(crossable)}"
                    )
        return self

    @property
    def raw_features(self) -> list[str]:
        return [*self.numeric, *self.categorical, *([self.image.column] if self.image else [])]


class ComparatorConfig(_Strict):
    """Thresholds for train/eval skew and drift; L-infinity (categorical), JS divergence (numeric)."""

    categorical_linf: Annotated[float, Field(gt=0, le=1)] | None = 0.1
    numeric_jsd: Annotated[float, Field(gt=0, le=1)] | None = 0.1
    per_feature: dict[str, Annotated[float, Field(gt=0, le=1)]] = {}


class DomainConfig(_Strict):
    """Valid range of a numeric feature (a schema float_domain/int_domain): values outside it are
    anomalies in training data and in serving data alike."""

    min: float | None = None
    max: float | None = None


class ValidationConfig(_Strict):
    # A curated text Schema (schema.pbtxt); when unset the schema is inferred from train.
    schema_path: str | None = None
    # Known valid ranges of numeric features, added to the schema (inferred or curated).
    domains: dict[str, DomainConfig] = {}
    max_string_domain_size: Annotated[int, Field(ge=1)] = 100
    skew: ComparatorConfig = ComparatorConfig()
    # Blocking anomalies stop the pipeline; set false to only report them.
    fail_on_anomalies: bool = True
    # Fewer rows than this in any split stop the pipeline before training.
    min_rows_per_split: Annotated[int, Field(ge=1)] = 10
    # Target leakage: a feature whose single-feature AUC on eval reaches this nearly determines
    # the label on its own and stops the pipeline, unless it is acknowledged below.
    leakage_max_auc: Annotated[float, Field(gt=0.5, le=1)] = 0.95
    acknowledged_strong_features: list[str] = []
    # Test rows identical to a train row (all features and label) above this fraction stop it.
    max_shared_row_fraction: Annotated[float, Field(ge=0, le=1)] = 0.1


# Model families over the TFT-transformed features: Keras (mlops/models.py; `cnn` for images,
# mlops/image_models.py) and gradient-boosted trees fitted by scikit-learn and compiled into
# TensorFlow ops (mlops/trees.py).
ModelFamily = Literal["linear", "dnn", "wide_deep", "gbt", "cnn"]


class SelfTrainingConfig(_Strict):
    """Self-training: fit on the labelled train rows, label the unlabeled rows the model is sure
    of (probability >= confidence), refit on both; up to max_rounds rounds of pseudo-labels."""

    enabled: bool = False
    confidence: Annotated[float, Field(gt=0, le=1)] = 0.9
    max_rounds: Annotated[int, Field(ge=1)] = 2


class GbtConfig(_Strict):
    """The `gbt` family: scikit-learn's GradientBoostingClassifier (see mlops/trees.py)."""

    # Most boosting stages (one tree per class per stage; one per stage for a binary label).
    # Fitting stops earlier when eval loss has not improved for early_stopping_rounds stages, and
    # the model keeps the stages up to the best eval loss.
    n_estimators: Annotated[int, Field(ge=1, le=5000)] = 300
    max_depth: Annotated[int, Field(ge=1, le=12)] = 3
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.1
    min_samples_leaf: Annotated[int, Field(ge=1)] = 1
    early_stopping_rounds: Annotated[int, Field(ge=1)] = 20


class TrainingConfig(_Strict):
    # linear: softmax regression on one-hot ids and numbers; dnn: embeddings + hidden layers;
    # wide_deep: both, their logits summed; gbt: gradient-boosted trees (settings in `gbt`).
    model: ModelFamily = "dnn"
    # When set, each family listed is trained and the best on eval loss is exported; the run
    # report shows the comparison. Empty: train `model` only.
    compare_families: list[ModelFamily] = []
    hidden_units: list[Annotated[int, Field(ge=1)]] = [32, 16]
    embedding_dim: Annotated[int, Field(ge=1)] = 4
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # L2 penalty factor on every dense kernel (0 = none).
    l2: Annotated[float, Field(ge=0)] = 0.0
    # Start from the champion's weights when its inputs and layer shapes match (else cold start).
    warm_start: bool = False
    # Also write TFLite models (float and dynamic-range quantised) of the Keras part.
    export_tflite: bool = False
    learning_rate: Annotated[float, Field(gt=0)] = 0.01
    batch_size: Annotated[int, Field(ge=1)] = 64
    epochs: Annotated[int, Field(ge=1)] = 50
    early_stopping_patience: Annotated[int, Field(ge=1)] = 5
    # "balanced" weights classes by inverse frequency; "none" disables class weights.
    class_weight: Literal["balanced", "none"] = "balanced"
    seed: int = 42
    self_training: SelfTrainingConfig = SelfTrainingConfig()
    gbt: GbtConfig = GbtConfig()

    @field_validator("compare_families")
    @classmethod
    def _distinct_families(cls, families: list[str]) -> list[str]:
        if len(set(families)) != len(families):
            raise ValueError(f"compare_families lists a family twice: {families}")
        if len(families) == 1:
            raise ValueError(
                f"compare_families needs two or more families, got {families}; "
                "to train one family set training.model"
            )
        return families

    @property
    def families(self) -> list[str]:
        """The families this training fits: compare_families, else model."""
        return list(self.compare_families) or [self.model]

    @model_validator(mode="after")
    def _check_gbt(self) -> TrainingConfig:
        if "gbt" not in self.families:
            return self
        where = (
            "training.model is gbt"
            if self.model == "gbt" and not self.compare_families
            else "training.compare_families includes gbt"
        )
        if self.warm_start:
            raise ValueError(
                f"training.warm_start with {where}: warm start loads the champion's Keras "
                "weights, and boosted trees are refitted from scratch; set warm_start: false"
            )
        return self


# Training parameters a search may set (those of them that TrainingConfig has).
_TUNABLE = ("learning_rate", "batch_size", "hidden_units", "embedding_dim", "dropout", "l2")
TUNABLE_PARAMETERS = tuple(name for name in _TUNABLE if name in TrainingConfig.model_fields)


class ParameterSpec(_Strict):
    """One dimension of the search space, in Vertex Vizier's terms (so the same space runs with
    Optuna locally and as a Vertex hyperparameter tuning job): `double` and `integer` take
    `min`/`max` (and `scale: log`), `discrete` takes numbers in `values`, `categorical` takes
    strings (a list parameter such as hidden_units is written "64,32")."""

    type: Literal["double", "integer", "discrete", "categorical"]
    min: float | None = None
    max: float | None = None
    scale: Literal["linear", "log"] = "linear"
    values: list[float | str] = []

    @model_validator(mode="after")
    def _check(self) -> ParameterSpec:
        if self.type in ("double", "integer"):
            if self.min is None or self.max is None or not self.min < self.max:
                raise ValueError(
                    f"a {self.type} parameter needs min < max (got {self.min}, {self.max})"
                )
            if self.scale == "log" and self.min <= 0:
                raise ValueError(f"scale: log needs min > 0 (got {self.min})")
            if self.values:
                raise ValueError(f"a {self.type} parameter takes min/max, not values")
        else:
            wanted = str if self.type == "categorical" else (int, float)
            if len(self.values) < 2 or not all(
                isinstance(v, wanted) and not isinstance(v, bool) for v in self.values
            ):
                kind = "strings" if self.type == "categorical" else "numbers"
                raise ValueError(f"a {self.type} parameter needs at least two {kind} in values")
            if self.min is not None or self.max is not None:
                raise ValueError(f"a {self.type} parameter takes values, not min/max")
        return self


class TuningConfig(_Strict):
    """Hyperparameter search before training: Optuna locally, Vertex Vizier on Vertex. The best
    trial's parameters replace those in `training` for the training step and after."""

    enabled: bool = False
    # the eval-split figure each trial is judged on: loss is minimised, accuracy maximised
    metric: Literal["loss", "accuracy"] = "loss"
    max_trials: Annotated[int, Field(ge=1, le=500)] = 10
    # trials at once on Vertex; locally they run one after another (TF already uses every core)
    parallel_trials: Annotated[int, Field(ge=1)] = 1
    # epochs per trial (default: training.epochs); early stopping applies as in training
    epochs: Annotated[int, Field(ge=1)] | None = None
    algorithm: Literal["bayesian", "random", "grid"] = "bayesian"
    seed: int = 0
    search_space: dict[str, ParameterSpec] = {}

    @model_validator(mode="after")
    def _check(self) -> TuningConfig:
        unknown = sorted(set(self.search_space) - set(TUNABLE_PARAMETERS))
        if unknown:
            raise ValueError(f"search_space names {unknown}; tunable: {list(TUNABLE_PARAMETERS)}")
        if self.enabled and not self.search_space:
            raise ValueError("enabled tuning needs a search_space")
        if self.algorithm == "grid" and any(
            spec.type == "double" for spec in self.search_space.values()
        ):
            raise ValueError("grid search needs integer, discrete or categorical parameters")
        if self.parallel_trials > self.max_trials:
            raise ValueError("parallel_trials must not exceed max_trials")
        return self


class ThresholdConfig(_Strict):
    """Value threshold on an overall metric, e.g. accuracy >= 0.9."""

    metric: Literal["accuracy", "auc"]
    lower_bound: Annotated[float, Field(ge=0, le=1)]


class ChangeThresholdConfig(_Strict):
    """Candidate must not be worse than the champion by more than `max_degradation`."""

    metric: Literal["accuracy", "auc"]
    max_degradation: Annotated[float, Field(ge=0, le=1)] = 0.0


class EvaluationConfig(_Strict):
    slices: list[str] = []
    thresholds: list[ThresholdConfig] = []
    change_threshold: ChangeThresholdConfig | None = None


class WorkerPoolConfig(_Strict):
    machine_type: str = "n1-standard-4"
    accelerator_type: str | None = None
    accelerator_count: Annotated[int, Field(ge=0)] = 0
    replica_count: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _check(self) -> WorkerPoolConfig:
        if bool(self.accelerator_type) != bool(self.accelerator_count):
            raise ValueError("accelerator_type and accelerator_count must be set together")
        return self


# The default `vertex.image`: a name that says what to do. The local target never pulls it;
# compiling or submitting for Vertex refuses it (see `check_vertex_ready`).
PLACEHOLDER_IMAGE = "set-vertex-image.invalid/replace-me/mlops-template:placeholder"
# HOST[:port]/PATH[:tag|@sha256:<64 hex>], e.g. europe-docker.pkg.dev/p/mlops/image@sha256:...
IMAGE_PATTERN = (
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?"
    r"(/[a-z0-9]+([._-][a-z0-9]+)*)+"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})?$"
)
KMS_KEY_PATTERN = r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$"
NETWORK_PATTERN = r"^projects/[0-9]+/global/networks/[^/]+$"
TENSORBOARD_PATTERN = r"^projects/[^/]+/locations/[^/]+/tensorboards/[^/]+$"
# A Vertex AI Experiments name is a metadata context id: lowercase letters, digits and hyphens.
EXPERIMENT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,127}$"
SUBNETWORK_PATTERN = r"^(https://www\.googleapis\.com/compute/v1/)?(projects/[^/]+/)?regions/[^/]+/subnetworks/[^/]+$"


class DataflowConfig(_Strict):
    """Dataflow workers for the Beam steps on Google Cloud (staging and temp locations are derived
    from the pipeline root: <pipeline_root>/dataflow/{staging,temp})."""

    machine_type: str = "n1-standard-4"
    max_num_workers: Annotated[int, Field(ge=1)] = 10
    # None: Dataflow's default boot disk size.
    disk_size_gb: Annotated[int, Field(ge=10)] | None = None
    # False: workers get private IPs only (the subnetwork needs Private Google Access).
    use_public_ips: bool = True


class AutoMLChallengerConfig(_Strict):
    """An AutoML Tabular model trained on our split beside ours (Vertex AI only), evaluated with
    the same evaluation and gates on the same test rows; the better on framing.success_metric
    is blessed (see components/automl.py)."""

    enabled: bool = False
    # AutoML's training budget: 1000 milli node hours = 1 node hour (Vertex allows 1000-72000).
    budget_milli_node_hours: Annotated[int, Field(ge=1000, le=72000)] = 1000
    # None: AutoML's default (maximize-au-roc for two classes, minimize-log-loss for more).
    # maximize-au-roc and maximize-au-prc need two classes.
    optimization_objective: (
        Literal["maximize-au-roc", "maximize-au-prc", "minimize-log-loss"] | None
    ) = None


class VertexConfig(_Strict):
    project: str | None = None
    # One region for everything: pipeline job, custom jobs, models, endpoints, Dataflow.
    region: str = "us-central1"
    pipeline_root: str | None = None
    service_account: str | None = None
    # The project image every component and the prediction server run in (Cloud Build pushes
    # it; pin it by digest). The placeholder default only works for the local target.
    image: str = Field(default=PLACEHOLDER_IMAGE, pattern=IMAGE_PATTERN)
    # The CUDA build of the image (Dockerfile --build-arg ACCELERATOR=gpu), for the training
    # custom job when vertex.training asks for GPUs.
    gpu_image: str | None = Field(default=None, pattern=IMAGE_PATTERN)
    # An image with TensorFlow's TPU runtime (libtpu), for a training job on TPUs (accelerator
    # types TPU_*). This template does not build one: neither lock file has libtpu.
    tpu_image: str | None = Field(default=None, pattern=IMAGE_PATTERN)
    serving_image: str | None = Field(default=None, pattern=IMAGE_PATTERN)
    # CMEK key for the pipeline job, custom jobs, models, endpoints, batch predictions, Dataflow.
    encryption_key: str | None = Field(default=None, pattern=KMS_KEY_PATTERN)
    # VPC network peered with Vertex AI (projects/<project number>/global/networks/<name>).
    network: str | None = Field(default=None, pattern=NETWORK_PATTERN)
    # Dataflow workers' subnetwork (regions/R/subnetworks/S, optionally with projects/P/ or the
    # full compute URL for a shared VPC).
    subnetwork: str | None = Field(default=None, pattern=SUBNETWORK_PATTERN)
    dataflow: DataflowConfig = DataflowConfig()
    training: WorkerPoolConfig = WorkerPoolConfig()
    # Beam runner for the data-heavy steps on Google Cloud.
    beam_runner: Literal["DataflowRunner", "DirectRunner"] = "DataflowRunner"
    model_display_name: str | None = None
    # Vertex AI Experiments: every pipeline run submitted (by `mlops submit` or a retraining
    # launch) joins this experiment, with its parameters and metrics. None: the pipeline's name
    # (<name>-training, <name>-prediction, <name>-monitoring).
    experiment: str | None = Field(default=None, pattern=EXPERIMENT_PATTERN)
    # Vertex AI TensorBoard instance (projects/P/locations/R/tensorboards/ID) the training custom
    # job streams its logs to. Needs vertex.service_account and vertex.pipeline_root.
    tensorboard: str | None = Field(default=None, pattern=TENSORBOARD_PATTERN)
    # Existing Vertex model resource (projects/P/locations/L/models/ID): new versions go under it.
    parent_model: str | None = Field(
        default=None, pattern=r"^projects/[^/]+/locations/[^/]+/models/[^/]+$"
    )
    automl_challenger: AutoMLChallengerConfig = AutoMLChallengerConfig()

    @model_validator(mode="after")
    def _check(self) -> VertexConfig:
        located = {
            "vertex.encryption_key": self.encryption_key,
            "vertex.subnetwork": self.subnetwork,
            "vertex.tensorboard": self.tensorboard,
        }
        for key, value in located.items():
            match = value and re.search(r"(?:locations|regions)/([^/]+)/", value)
            if match and match.group(1) != self.region:
                raise ValueError(
                    f"{key} is in {match.group(1)!r} but vertex.region is {self.region!r}: "
                    "everything runs in one region"
                )
        return self

    @property
    def training_image(self) -> str:
        """The image of the training custom job: the TPU image on TPUs, the GPU build on GPUs."""
        accelerator = self.training.accelerator_type or ""
        if accelerator.startswith("TPU_"):
            return self.tpu_image or self.image
        return self.gpu_image if accelerator and self.gpu_image else self.image


class ServingConfig(_Strict):
    """Online prediction: request limits, request logging, and the endpoint's deployment."""

    max_instances: Annotated[int, Field(ge=1)] = 1000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 5 * 1024 * 1024
    # Abstention: a prediction whose top probability is below min_confidence says so
    # ("abstained": true) and carries abstain_label (null when unset) instead of the class.
    min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.0
    abstain_label: str | None = None
    # Fraction of requests (and their predictions) written to the request log.
    request_log_sample_rate: Annotated[float, Field(ge=0, le=1)] = 1.0
    # Batch prediction defaults: the input file and the column that keys each prediction.
    batch_input: str | None = None
    batch_id_column: str | None = None
    # Share of traffic a newly deployed version gets while the previous one keeps the rest.
    canary_percent: Annotated[int, Field(ge=0, le=100)] = 0
    # Vertex AI endpoint
    machine_type: str = "n1-standard-2"
    min_replicas: Annotated[int, Field(ge=1)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 2
    # Deploy onto this existing Vertex endpoint (projects/P/locations/L/endpoints/ID) instead of
    # creating one, e.g. to canary a new version beside the deployed one.
    vertex_endpoint: str | None = Field(
        default=None, pattern=r"^projects/[^/]+/locations/[^/]+/endpoints/[^/]+$"
    )
    # Vertex traffic split by deployed model id; "0" is the model being deployed. Empty: all
    # traffic to the new model. Example canary: {"0": 10, "1234567890": 90}.
    vertex_traffic_split: dict[str, Annotated[int, Field(ge=0, le=100)]] = {}
    # bq://project.dataset.table for Vertex request-response logging (None: no logging on Vertex)
    bigquery_log_table: str | None = Field(default=None, pattern=r"^bq://[^.]+\.[^.]+\.[^.]+$")

    @model_validator(mode="after")
    def _check(self) -> ServingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError("serving.max_replicas must be >= serving.min_replicas")
        split = self.vertex_traffic_split
        if split and (sum(split.values()) != 100 or "0" not in split):
            raise ValueError(
                f"serving.vertex_traffic_split must include '0' (the new model) and sum to 100, "
                f"got {split}"
            )
        if split and len(split) > 1 and not self.vertex_endpoint:
            raise ValueError(
                "serving.vertex_traffic_split names deployed models: set serving.vertex_endpoint "
                "to the endpoint they are deployed on"
            )
        return self


class RetrainConfig(_Strict):
    """When a monitoring run launches the training pipeline."""

    enabled: bool = True
    # Features whose skew or drift triggers retraining (empty: any monitored feature).
    features: list[str] = []
    on_prediction_drift: bool = True
    # Retrain when labelled serving data shows this metric below this value.
    min_quality: ThresholdConfig | None = None
    # Never judge (or retrain on) fewer serving examples than this.
    min_examples: Annotated[int, Field(ge=1)] = 100
    # Minimum hours between two retraining launches.
    cooldown_hours: Annotated[float, Field(ge=0)] = 24.0


class MonitoringConfig(_Strict):
    """Training-serving skew, window-to-window drift and prediction drift thresholds."""

    skew: ComparatorConfig = ComparatorConfig()
    drift: ComparatorConfig = ComparatorConfig()
    prediction_drift_linf: Annotated[float, Field(gt=0, le=1)] = 0.1
    # Length of the window of logged requests a monitoring run looks at (and of the one before).
    window_hours: Annotated[float, Field(gt=0)] = 24.0
    retrain: RetrainConfig = RetrainConfig()
    # Vertex AI Model Monitoring: how often it samples and checks the endpoint.
    vertex_sample_rate: Annotated[float, Field(gt=0, le=1)] = 0.8
    vertex_interval_hours: Annotated[int, Field(ge=1)] = 1
    alert_emails: list[str] = []
    # Where the retraining cool-down state lives (a gs:// URI or a local path). None: on Vertex
    # <pipeline root>/state/<name>/retrain_state.json, locally under local.root.
    state_uri: str | None = None


class LocalConfig(_Strict):
    # Runs, registry and reports are written under this directory (relative to the repo root).
    root: str = ".mlops"


class ExplainConfig(_Strict):
    """Sampled Shapley attributions on raw features (Vertex Explainable AI's method for custom
    containers): `rows` test rows, `paths` random feature orders per row."""

    rows: Annotated[int, Field(ge=1, le=10_000)] = 100
    paths: Annotated[int, Field(ge=1, le=50)] = 10
    seed: int = 0


class DlpConfig(_Strict):
    """Cloud DLP inspection at ingest, beside our own detector (for Vertex runs: it needs Google
    Cloud credentials and bills the project `vertex.project`). A sample of the source rows goes
    to DLP's inspect_content as a table; every column with a finding gets the same policy
    decision (privacy.columns, block by default) as one our detector finds."""

    enabled: bool = False
    # DLP info type names (https://cloud.google.com/sensitive-data-protection/docs/infotypes-reference)
    info_types: list[Annotated[str, Field(pattern=r"^[A-Z0-9_]+$")]] = [
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD_NUMBER",
        "IP_ADDRESS",
        "US_SOCIAL_SECURITY_NUMBER",
    ]
    min_likelihood: Literal["VERY_UNLIKELY", "UNLIKELY", "POSSIBLE", "LIKELY", "VERY_LIKELY"] = (
        "LIKELY"
    )
    max_findings: Annotated[int, Field(ge=1, le=3000)] = 1000  # DLP's per-request limit
    sample_rows: Annotated[int, Field(ge=1, le=10000)] = 500


class PrivacyConfig(_Strict):
    """Personal data found at ingest (by column name or sampled values) stops the run unless its
    column has a policy here: drop it, replace it with a salted hash, or keep it. The request log
    of the prediction server gets the same policies, and any personal data in it is redacted."""

    columns: dict[str, Literal["block", "drop", "hash", "keep"]] = {}
    # The environment variable that holds the hash salt (read at ingest, never stored).
    hash_salt_env: str = "MLOPS_PII_SALT"
    dlp: DlpConfig = DlpConfig()


class RuleConfig(_Strict):
    """A rule baseline: predict `predict` where `when` holds, `otherwise` elsewhere. `when`
    compares columns with literals, joined by and/or/not: "payment_type == 'Credit Card'"; a
    column whose name is not an identifier goes in backticks: "`trip miles` > 2"."""

    name: str
    when: str
    predict: str
    otherwise: str

    @field_validator("when")
    @classmethod
    def _parses(cls, value: str) -> str:
        # The shape is checked here, the column names once the data is read.
        from mlops.baselines import parse_rule

        parse_rule(value, columns=None)
        return value


class BaselinesConfig(_Strict):
    """The model is blessed only if its success metric reaches the best baseline's (majority
    class, a linear model on the same features, the rules) plus `margin`. A negative margin is a
    tolerance: the model may trail the best baseline by at most that much (say why in the config)."""

    margin: Annotated[float, Field(ge=-1, le=1)] = 0.0
    rules: list[RuleConfig] = []


class FairnessConfig(_Strict):
    """Per group of each sensitive feature, on the test split, as TFMA computes it per slice:
    accuracy, and for binary tasks the positive rate and true/false positive rates at the served
    decision (P(class 1) > 0.5). Multi-class tasks compare accuracy only: the rates are binary.
    The largest gap between groups (of at least `min_group_size` rows; smaller groups are
    reported, not gated) must stay within `max_gap`."""

    sensitive_features: list[str] = []
    max_gap: Annotated[float, Field(gt=0, le=1)] = 0.2
    min_group_size: Annotated[int, Field(ge=1)] = 20


class FramingConfig(_Strict):
    """The business framing: what is predicted, for whom, and what success means."""

    objective: str
    success_metric: Literal["accuracy", "auc"]
    success_threshold: Annotated[float, Field(ge=0, le=1)]


class PipelineConfig(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")]
    framing: FramingConfig
    data: DataConfig
    features: FeatureConfig
    validation: ValidationConfig = ValidationConfig()
    training: TrainingConfig = TrainingConfig()
    tuning: TuningConfig = TuningConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    fairness: FairnessConfig = FairnessConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    explain: ExplainConfig = ExplainConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    local: LocalConfig = LocalConfig()
    vertex: VertexConfig = VertexConfig()
    # Beam pipeline options for the local target (FnApiRunner avoids Prism's download offline).
    beam_args: list[str] = ["--runner=FnApiRunner"]

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        label = self.data.label
        if label in self.features.raw_features:
            raise ValueError(f"data.label '{label}' must not also be a feature")
        leaked = set(self.data.exclude_columns) & set(self.features.raw_features)
        if leaked:
            raise ValueError(f"features {sorted(leaked)} are listed in data.exclude_columns")
        dropped = [c for c, p in self.privacy.columns.items() if p == "drop"]
        if set(dropped) & {*self.features.raw_features, label}:
            raise ValueError(
                f"privacy.columns drops {sorted(set(dropped) & {*self.features.raw_features, label})}, "
                "which the model reads: hash them instead, or remove them from features"
            )
        if self.training.self_training.enabled and self.data.unlabeled != "keep":
            raise ValueError(
                "training.self_training.enabled needs data.unlabeled: keep (it is "
                f"{self.data.unlabeled!r}): self-training learns from the rows without a label"
            )
        if self.training.families == ["gbt"] and self.tuning.enabled:
            raise ValueError(
                "tuning.enabled with training.model gbt: the search space names Keras training "
                f"fields ({list(TUNABLE_PARAMETERS)}), which the trees do not read; set "
                "training.gbt by hand, or compare gbt with a Keras family (compare_families)"
            )
        if "gbt" in self.training.families and self.vertex.training.replica_count > 1:
            raise ValueError(
                f"vertex.training.replica_count is {self.vertex.training.replica_count} and "
                "training fits gbt: scikit-learn's boosted trees train on one machine; set "
                "replica_count: 1"
            )
        if self.privacy.dlp.enabled and not self.vertex.project:
            raise ValueError(
                "privacy.dlp.enabled needs vertex.project: the project Cloud DLP inspects in"
            )
        image = self.features.image
        families = {self.training.model, *self.training.compare_families}
        if image is not None and families != {"cnn"}:
            raise ValueError(
                f"features.image needs training.model: cnn (got {sorted(families)}): the other "
                "families read tabular features"
            )
        if image is not None and (self.tuning.enabled or self.training.self_training.enabled):
            raise ValueError(
                "features.image does not support tuning.enabled or training.self_training yet"
            )
        if image is None and "cnn" in families:
            raise ValueError("training.model cnn needs features.image (an image column)")
        for name in self.evaluation.slices:
            if image is not None and name == image.column:
                raise ValueError(f"evaluation.slices names the image column {name!r}")
            if name not in self.features.raw_features:
                raise ValueError(
                    f"evaluation.slices names '{name}'; allowed: raw features "
                    f"{self.features.raw_features}"
                )
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> PipelineConfig:
        return cls.model_validate(json.loads(text))

    def with_overrides(self, **fields: Any) -> PipelineConfig:
        """A copy with top-level sections replaced, validated again."""
        data = self.model_dump()
        data.update(fields)
        return PipelineConfig.model_validate(data)


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"invalid config {path}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<top level>"
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {key}: {item['msg']}{shown}")
    return "\n".join(lines)


def load_config(path: str | Path) -> PipelineConfig:
    """Load and validate a YAML config. Relative paths (data.source, validation.schema_path,
    serving.batch_input, local.root) stay as written: they are relative to the repo root, and
    `local_path` resolves them where a step uses them on this machine."""
    path = Path(path)
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"config file {path} not found (configs in {CONFIG_DIR}: {known})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None
    return config


# Data sources that ship in an installed package (mlops/tabular.py, mlops/images.py).
PACKAGED_SOURCES = ("palmerpenguins", "sklearn-digits")


def local_path(value: str) -> str:
    """Where a path from a config is on this machine: a relative path is relative to the repo
    root (the config keeps the string as written, so specs compiled from it carry no path of the
    machine that compiled them); URIs, absolute paths and "palmerpenguins" are returned as is."""
    if "://" in value or value in PACKAGED_SOURCES or Path(value).is_absolute():
        return value
    return str(REPO_ROOT / value)
