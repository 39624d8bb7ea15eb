"""Compile the pipelines to PipelineSpec JSON (submitting a compiled spec: `mlops.vertex_jobs`)."""

from __future__ import annotations

from pathlib import Path

from mlops.config import PipelineConfig
from pipelines.builders import build_pipeline


def compile_training_pipeline(config: PipelineConfig, target: str, output: str | Path) -> Path:
    return compile_pipeline(config, "training", target, output)


def compile_pipeline(config: PipelineConfig, kind: str, target: str, output: str | Path) -> Path:
    """Compile the training, prediction or monitoring pipeline for a target to a JSON spec.

    For Vertex, when the config names the project and pipeline root, the spec's default config is
    the one a submitted job gets (`vertex_runtime_config`: Beam on Dataflow), so the spec runs as
    intended even when started without `mlops submit`."""
    from kfp import compiler

    if target == "vertex" and config.vertex.project and config.vertex.pipeline_root:
        from mlops.vertex_jobs import SubmitSettings, vertex_runtime_config

        config = vertex_runtime_config(config, SubmitSettings.resolve(config))
    pipeline = build_pipeline(config, kind, target)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, str(output))
    return output
