"""`mlops`: run the pipeline locally, compile it, submit it to Vertex AI, inspect the registry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from mlops.config import DEFAULT_CONFIG, ConfigError, PipelineConfig, load_config, local_path
from mlops.paths import compiled_spec_path
from pipelines.builders import PIPELINES, TARGETS


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        default=str(DEFAULT_CONFIG),
        help=f"pipeline config YAML (default: {DEFAULT_CONFIG.relative_to(DEFAULT_CONFIG.parents[1])})",
    )
    parser.add_argument(
        "--config-json",
        help="a config already validated and serialised as JSON (a file), instead of --config",
    )


def _add_images(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image",
        help="the project image for the Vertex target (default vertex.image), e.g. "
        "REGION-docker.pkg.dev/PROJECT/REPO/IMAGE@sha256:DIGEST",
    )
    parser.add_argument(
        "--gpu-image", help="its CUDA build, for GPU training (default vertex.gpu_image)"
    )


def cmd_run(args: argparse.Namespace, config: PipelineConfig) -> int:
    from pipelines.local import run_training_locally, summarize

    result = run_training_locally(config, run_id=args.run_id)
    print()
    print(summarize(result.manifest))
    return 0 if result.succeeded else 1


def _with_images(args: argparse.Namespace, config: PipelineConfig) -> PipelineConfig:
    """--image / --gpu-image over vertex.image / vertex.gpu_image."""
    images = {
        key: value for key, value in (("image", args.image), ("gpu_image", args.gpu_image)) if value
    }
    if not images:
        return config
    try:
        return config.with_overrides(vertex={**config.vertex.model_dump(), **images})
    except ValidationError as exc:
        flags = " ".join(f"--{key.replace('_', '-')}" for key in images)
        raise ConfigError(
            f"{flags}: not an image reference HOST/PATH[:tag|@sha256:<64 hex>] "
            f"({exc.error_count()} error(s))"
        ) from None


def cmd_compile(args: argparse.Namespace, config: PipelineConfig) -> int:
    from pipelines.vertex import compile_pipeline

    config = _with_images(args, config)
    output = (
        Path(args.output) if args.output else compiled_spec_path(config, args.pipeline, args.target)
    )
    compile_pipeline(config, args.pipeline, args.target, output)
    print(f"compiled {config.name} {args.pipeline} pipeline for {args.target}: {output}")
    return 0


def cmd_submit(args: argparse.Namespace, config: PipelineConfig) -> int:
    from mlops.vertex_jobs import SubmitSettings, build_pipeline_job, describe_job, submit
    from pipelines.vertex import compile_pipeline

    settings = SubmitSettings.resolve(
        _with_images(args, config),
        args.project,
        args.region,
        args.pipeline_root,
        args.service_account,
    )
    # Flags land in the config, so the compiled spec puts everything in the job's region.
    config = settings.apply(_with_images(args, config))
    parameters = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects NAME=VALUE, got {item!r}")
        parameters[key] = value
    if args.template:
        template = Path(args.template)
    else:
        template = compiled_spec_path(config, args.pipeline, "vertex")
        compile_pipeline(config, args.pipeline, "vertex", template)
    credentials = None
    if args.dry_run:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()  # a dry run must not look for real credentials
    job = build_pipeline_job(
        config,
        template,
        settings,
        credentials=credentials,
        kind=args.pipeline,
        parameters=parameters,
    )
    if args.dry_run:
        print("dry run: this PipelineJob would be submitted (nothing was sent):")
        print(describe_job(job, settings))
        return 0
    submit(job, settings)
    print(f"submitted {job.resource_name}")
    return 0


def cmd_models(args: argparse.Namespace, config: PipelineConfig) -> int:
    from mlops.paths import registry_root
    from mlops.registry import LocalModelRegistry

    rows = LocalModelRegistry(registry_root(config)).describe(config.name)
    if not rows:
        print(f"no versions of {config.name!r} in {registry_root(config)}")
        return 0
    print(json.dumps(rows, indent=2))
    return 0


def cmd_deploy(args: argparse.Namespace, config: PipelineConfig) -> int:
    from components.deploy import run_deploy_local

    record = run_deploy_local(config, args.version, args.canary)
    print(f"endpoint {record['name']}: traffic {json.dumps(record['traffic'])}")
    return 0


def cmd_serve(args: argparse.Namespace, config: PipelineConfig) -> int:
    import time

    from mlops.endpoints import LocalEndpoints
    from mlops.paths import endpoints_root, request_log_dir
    from mlops.registry import resolve_version
    from mlops.serving.server import serve

    endpoint = None if args.version else LocalEndpoints(endpoints_root(config)).find(config.name)
    if endpoint:
        models, traffic = endpoint["models"], endpoint["traffic"]
        source = f"endpoint {config.name} (traffic {json.dumps(traffic)})"
    else:
        version = resolve_version(config, args.version or "champion")
        models, traffic = (
            {str(version.version): str(version.model_dir)},
            {str(version.version): 100},
        )
        source = f"model {config.name} version {version.version}"
    log = request_log_dir(config) / f"requests-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"serving {source} on {args.host}:{args.port or 'AIP_HTTP_PORT/8080'}; request log {log}")
    serve(models, traffic, config, host=args.host, port=args.port, request_log=str(log))
    return 0


def cmd_batch_predict(args: argparse.Namespace, config: PipelineConfig) -> int:
    import os

    from components.batch_predict import run_batch_predict
    from mlops.registry import resolve_version

    source = args.input or (
        local_path(config.serving.batch_input) if config.serving.batch_input else None
    )
    id_column = args.id_column or config.serving.batch_id_column
    if not source or not id_column:
        raise ConfigError(
            "batch-predict needs --input and --id-column (or serving.batch_input "
            "and serving.batch_id_column in the config)"
        )
    version = resolve_version(config, args.version)
    summary = run_batch_predict(config, str(version.model_dir), source, args.output, id_column)
    print(
        f"predicted {summary['rows']} rows with {config.name} version {version.version} "
        f"into {args.output}"
    )
    sys.stdout.flush()
    os._exit(0)  # Beam + TF can crash the interpreter at teardown; everything is written


def cmd_monitor(args: argparse.Namespace, config: PipelineConfig) -> int:
    from mlops.paths import request_log_dir
    from pipelines.local import run_locally, summarize

    source = args.input or str(request_log_dir(config))
    result = run_locally(
        config
        if args.retrain
        else config.with_overrides(
            monitoring={
                **config.monitoring.model_dump(),
                "retrain": {**config.monitoring.retrain.model_dump(), "enabled": False},
            }
        ),
        "monitoring",
        source=source,
        previous_source=args.previous or "",
        model_version=args.version,
    )
    print()
    print(summarize(result.manifest))
    monitor = result.manifest["results"].get("monitor") or {}
    for finding in monitor.get("findings", []):
        print(f"  finding: {finding.get('message', finding)}")
    decision = monitor.get("decision")
    if decision:
        verdict = "RETRAIN" if decision["retrain"] else "no retraining"
        print(
            f"  decision: {verdict}; reasons: {decision['reasons'] or 'none'}; "
            f"blocked by: {decision['blocked_by'] or 'nothing'}"
        )
        print(f"  monitoring report: {monitor.get('report')}")
    return 0 if result.succeeded else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops",
        description="End-to-end MLOps pipeline template: one KFP pipeline definition, run locally "
        "or on Vertex AI Pipelines.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="run the training pipeline on this machine (kfp.local)",
        description="Run ingest -> validate -> transform -> train -> evaluate -> register -> "
        "report locally. Reads the config's data; writes <local.root>/runs/<run id>/ (artifacts, "
        "run.json, report.html) and a new version in <local.root>/registry/.",
    )
    _add_config(run)
    run.add_argument(
        "--run-id", help="the run's id (default: <name>-<date>-<time>-<random>); must be new"
    )
    run.set_defaults(func=cmd_run)

    compile_ = commands.add_parser(
        "compile",
        help="compile the training pipeline to a PipelineSpec JSON",
        description="Compile the pipeline for a target. Reads the config; writes the spec to "
        "--output (default <local.root>/compiled/<name>-training-<target>.json).",
    )
    _add_config(compile_)
    compile_.add_argument("--target", choices=TARGETS, default="vertex")
    compile_.add_argument("--pipeline", choices=PIPELINES, default="training")
    compile_.add_argument("--output", "-o", help="where to write the compiled spec")
    _add_images(compile_)
    compile_.set_defaults(func=cmd_compile)

    submit = commands.add_parser(
        "submit",
        help="submit the training pipeline to Vertex AI Pipelines",
        description="Compile (or take --template) and submit an aiplatform.PipelineJob. Project, "
        "region, pipeline root and service account come from flags or the config's vertex section. "
        "--dry-run prints the job and sends nothing.",
    )
    _add_config(submit)
    submit.add_argument("--project")
    submit.add_argument("--region")
    submit.add_argument("--pipeline-root", help="gs:// URI for pipeline artifacts")
    submit.add_argument("--service-account")
    submit.add_argument("--template", help="a compiled spec to submit instead of compiling")
    _add_images(submit)
    submit.add_argument("--pipeline", choices=PIPELINES, default="training")
    submit.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline parameter, e.g. batch_input=gs://bucket/rows.jsonl (repeatable)",
    )
    submit.add_argument(
        "--dry-run", action="store_true", help="print what would be sent; send nothing"
    )
    submit.set_defaults(func=cmd_submit)

    models = commands.add_parser(
        "models",
        help="list the versions and aliases in the local model registry",
        description="Reads <local.root>/registry/<name>/ and prints versions, aliases and metrics.",
    )
    _add_config(models)
    models.set_defaults(func=cmd_models)

    deploy = commands.add_parser(
        "deploy",
        help="point the local endpoint at a model version (optionally as a canary)",
        description="Reads the local registry; writes <local.root>/endpoints/<name>.json, the "
        "traffic split that `mlops serve` honours.",
    )
    _add_config(deploy)
    deploy.add_argument("--version", default="champion", help="version number or alias")
    deploy.add_argument(
        "--canary",
        type=int,
        help="percent of traffic for this version (default serving.canary_percent)",
    )
    deploy.set_defaults(func=cmd_deploy)

    serve = commands.add_parser(
        "serve",
        help="serve online predictions over HTTP (Vertex AI custom-container contract)",
        description="Serves the local endpoint's traffic split (or --version) on AIP_HTTP_PORT "
        "(default 8080) with AIP_HEALTH_ROUTE / AIP_PREDICT_ROUTE; logs sampled requests to "
        "<local.root>/request_logs/<name>/.",
    )
    _add_config(serve)
    serve.add_argument("--version", help="serve this version or alias only (ignores the endpoint)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, help="default: $AIP_HTTP_PORT or 8080")
    serve.set_defaults(func=cmd_serve)

    batch = commands.add_parser(
        "batch-predict",
        help="predict a CSV / JSON Lines / Parquet file with Beam",
        description="Reads --input (rows with an id column and the raw features) and writes "
        "<output>/predictions-*.jsonl, one line per row keyed by the id.",
    )
    _add_config(batch)
    batch.add_argument("--input", help="default serving.batch_input")
    batch.add_argument("--output", required=True, help="directory for the predictions")
    batch.add_argument("--id-column", help="default serving.batch_id_column")
    batch.add_argument("--version", default="champion", help="version number or alias")
    batch.set_defaults(func=cmd_batch_predict)

    monitor = commands.add_parser(
        "monitor",
        help="check serving data for skew and drift and decide whether to retrain",
        description="Compares serving data (default: the local request logs' latest window) with "
        "the model's training data; writes <local.root>/runs/<run id>/ with SchemaDiff.pb, "
        "monitoring.json and report.html, and runs the training pipeline when the retraining "
        "policy (monitoring.retrain) says so.",
    )
    _add_config(monitor)
    monitor.add_argument("--input", help="a batch file or a directory of request logs")
    monitor.add_argument("--previous", help="the previous window's batch file (for drift)")
    monitor.add_argument("--version", default="champion", help="model version or alias")
    monitor.add_argument(
        "--no-retrain",
        dest="retrain",
        action="store_false",
        help="decide, but never launch training",
    )
    monitor.set_defaults(func=cmd_monitor)
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    # TensorFlow's C++ info logs (CUDA probing on CPU machines) drown the pipeline's own output;
    # set here, at run time, so every step process inherits it. An explicit setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from google.auth.exceptions import DefaultCredentialsError, RefreshError

    args = build_parser().parse_args(argv)
    try:
        if args.config_json:
            config = PipelineConfig.from_json(Path(args.config_json).read_text())
        else:
            config = load_config(args.config)
        return args.func(args, config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DefaultCredentialsError, RefreshError):
        print(
            "error: no usable Google Cloud credentials. Log in with "
            "`gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to a "
            "service account key file), then run the command again; --dry-run needs no "
            "credentials.",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
