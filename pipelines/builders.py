"""Which pipelines exist, and the one place that maps a pipeline's name to its factory."""

from __future__ import annotations

from mlops.config import PipelineConfig

PIPELINES = ("training", "prediction", "monitoring")
TARGETS = ("local", "vertex")


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {list(TARGETS)}, not {target!r}")


def build_pipeline(config: PipelineConfig, kind: str, target: str):
    """The `@dsl.pipeline` named `kind` for `config` on `target` ("local" or "vertex"). A Vertex
    pipeline is refused unless it can run on a real project (`check_vertex_ready`)."""
    check_target(target)
    if target == "vertex":
        from mlops.vertex_jobs import check_vertex_ready

        check_vertex_ready(config)
    if kind == "training":
        from pipelines.training import build_training_pipeline as factory
    elif kind == "prediction":
        from pipelines.prediction import build_prediction_pipeline as factory
    elif kind == "monitoring":
        from pipelines.monitoring import build_monitoring_pipeline as factory
    else:
        raise ValueError(f"pipeline must be one of {list(PIPELINES)}, not {kind!r}")
    return factory(config, target)
