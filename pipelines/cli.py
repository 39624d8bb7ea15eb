"""`mlops`: run the pipeline locally, compile it, submit it to Vertex AI, inspect the registry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlops.config import DEFAULT_CONFIG, ConfigError, PipelineConfig, load_config, local_path
from mlops.paths import compiled_spec_path, local_root
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
    from pipelines.local import out_of_space_advice, run_training_locally, summarize

    print(f"run {config.name} training pipeline locally (kfp.local)", flush=True)
    result = run_training_locally(
        config, run_id=args.run_id, verbose=args.verbose, cache=args.cache
    )
    print()
    print(summarize(result.manifest))
    advice = out_of_space_advice(result.manifest, str(local_root(config)))
    if advice:
        print(f"\nerror: {advice}", file=sys.stderr)
    return 0 if result.succeeded else 1


def _with_vertex_flags(
    config: PipelineConfig,
    image: str | None,
    parent_model: str | None,
    gpu_image: str | None = None,
) -> PipelineConfig:
    """The config with `vertex.image` replaced by a checked --image (a tag or a digest),
    `vertex.gpu_image` by --gpu-image and `vertex.parent_model` by --parent-model."""
    from mlops.templates import check_image

    vertex = {}
    if image:
        vertex["image"] = check_image(image)
    if gpu_image:
        try:
            vertex["gpu_image"] = check_image(gpu_image)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("--image", "--gpu-image", 1)) from None
    if parent_model:
        vertex["parent_model"] = parent_model
    if not vertex:
        return config
    try:
        return config.with_overrides(vertex={**config.vertex.model_dump(), **vertex})
    except ValueError as exc:  # pydantic's ValidationError names the field and the pattern
        raise ConfigError(str(exc)) from exc


def cmd_compile(args: argparse.Namespace, config: PipelineConfig) -> int:
    from pipelines.vertex import compile_pipeline

    config = _with_vertex_flags(config, args.image, args.parent_model, args.gpu_image)
    kinds = _chosen(args.pipeline) or ("training",)
    if args.output and len(kinds) > 1:
        raise ConfigError("--output names one file; use --output-dir with --pipeline all")
    for kind in kinds:
        if args.output:
            output = Path(args.output)
        elif args.output_dir:
            output = Path(args.output_dir) / compiled_spec_path(config, kind, args.target).name
        else:
            output = compiled_spec_path(config, kind, args.target)
        try:
            compile_pipeline(config, kind, args.target, output)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the compiled pipeline to {output}: {exc.strerror or exc} "
                "(choose a writable --output / --output-dir)"
            ) from exc
        print(f"compiled {config.name} {kind} pipeline for {args.target}: {output}")
    return 0


def _chosen(pipelines: list[str] | None) -> tuple[str, ...]:
    """The pipelines named by repeated --pipeline flags, `all` meaning every one, in order."""
    chosen = []
    for name in pipelines or []:
        for kind in PIPELINES if name == "all" else (name,):
            if kind not in chosen:
                chosen.append(kind)
    return tuple(chosen)


def _parse_params(items: list[str]) -> dict[str, str]:
    parameters = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects NAME=VALUE, got {item!r}")
        parameters[key] = value
    return parameters


def cmd_submit(args: argparse.Namespace, config: PipelineConfig) -> int:
    from mlops.vertex_jobs import (
        SubmitSettings,
        build_pipeline_job,
        describe_job,
        experiment_name,
        submit,
    )
    from pipelines.vertex import compile_pipeline

    config = _with_vertex_flags(config, args.image, None, args.gpu_image)
    settings = SubmitSettings.resolve(
        config,
        args.project,
        args.region,
        args.pipeline_root,
        args.service_account,
    )
    # Flags land in the config, so the compiled spec puts everything in the job's region.
    config = settings.apply(config)
    parameters = _parse_params(args.param)
    if args.template:
        template = args.template  # a file, gs:// or https://REGION-kfp.pkg.dev/... URI
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
    experiment = experiment_name(config, args.pipeline)
    if args.dry_run:
        print("dry run: this PipelineJob would be submitted (nothing was sent):")
        print(describe_job(job, settings, experiment))
        return 0
    submit(job, settings, experiment)
    print(f"submitted {job.resource_name}")
    return 0


def _package_names(config: PipelineConfig, kinds: tuple[str, ...]) -> list[str]:
    """The registry package each pipeline uploads as (its pipeline name)."""
    from pipelines.monitoring import monitoring_pipeline_name
    from pipelines.prediction import prediction_pipeline_name
    from pipelines.training import pipeline_name

    names = {
        "training": pipeline_name,
        "prediction": prediction_pipeline_name,
        "monitoring": monitoring_pipeline_name,
    }
    return [names[kind](config) for kind in kinds]


def cmd_publish(args: argparse.Namespace, config: PipelineConfig) -> int:
    from mlops import templates

    if not args.tag:
        raise ConfigError("publish needs at least one --tag")
    if args.promote:
        if args.template:
            raise ConfigError("--promote moves tags on an uploaded version; drop --template")
        packages = list(args.package)
        packages += _package_names(config, _chosen(args.pipeline))
        if not packages:
            raise ConfigError("--promote needs --package NAME or --pipeline")
        published = [
            templates.promote(args.host, package, args.promote, args.tag) for package in packages
        ]
    else:
        if not args.template:
            raise ConfigError("publish needs --template FILE (or --promote VERSION)")
        published = [templates.upload(args.host, path, args.tag) for path in args.template]
    for item in published:
        print(
            f"published {item.package} {item.version} tags {','.join(item.tags)}: {item.template_uri}"
        )
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(
            json.dumps([item.to_dict() for item in published], indent=2) + "\n"
        )
    return 0


def cmd_schedule(args: argparse.Namespace, config: PipelineConfig) -> int:
    from mlops.schedules import upsert_schedule
    from mlops.vertex_jobs import SubmitSettings

    config = _with_vertex_flags(config, args.image, None, args.gpu_image)
    settings = SubmitSettings.resolve(
        config, args.project, args.region, args.pipeline_root, args.service_account
    )
    credentials = None
    if args.dry_run:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()  # a dry run must not look for real credentials
    result = upsert_schedule(
        config,
        args.template,
        settings,
        args.pipeline,
        args.cron,
        parameters=_parse_params(args.param),
        credentials=credentials,
        max_concurrent_run_count=args.max_concurrent_runs,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        print("dry run: this schedule would be created or updated (nothing was sent):")
    else:
        print(f"{result.action} schedule {result.resource_name}")
    print(result.to_json())
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


def _percent(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a whole percent from 0 to 100, got {text!r}")
    return value


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of runs >= 1, got {text!r}")
    return value


def cmd_runs(args: argparse.Namespace, config: PipelineConfig) -> int:
    from mlops.runs import compare_runs, list_runs

    if args.prune is not None:
        from mlops.paths import runs_root
        from mlops.runs import RunInProgress, prune_runs
        from pipelines.local import mark_interrupted_runs

        if runs_root(config).is_dir():
            mark_interrupted_runs(runs_root(config))  # a dead RUNNING run may go too
        try:
            pruned = prune_runs(config, args.prune)
        except RunInProgress as exc:
            raise ConfigError(str(exc)) from exc
        print(
            f"removed {len(pruned.removed)} run(s) of {config.name!r} "
            f"({pruned.bytes_freed / 1e6:.1f} MB) and {pruned.cache_entries_removed} step-cache "
            f"entr{'y' if pruned.cache_entries_removed == 1 else 'ies'}; kept the newest "
            f"{len(pruned.kept)}: {', '.join(pruned.kept) or 'none'}"
        )
        return 0
    runs = list_runs(config)
    if args.compare:
        by_id = {run["run_id"]: run for run in runs}
        missing = [run_id for run_id in args.compare if run_id not in by_id]
        if missing:
            raise ConfigError(f"no local run {missing[0]!r}; `mlops runs` lists them")
        print(json.dumps(compare_runs(*(by_id[r] for r in args.compare)), indent=2))
        return 0
    if not runs:
        print(f"no runs of {config.name!r} yet")
        return 0
    print(f"{'run':<34} {'status':<10} {'config':<24} {'data':<18} metrics")
    for run in runs:
        metrics = ", ".join(
            f"{k} {v:.4f}"
            for k, v in (run.get("metrics") or {}).items()
            if k in ("accuracy", "auc")
        )
        outcome = {True: "blessed", False: "not blessed"}.get(run.get("blessed"), "")
        version = run.get("registered_version")
        print(
            f"{run['run_id']:<34} {run.get('status', ''):<10} {run.get('config_hash') or '':<24} "
            f"{(run.get('data_fingerprint') or '')[:17]:<18} {metrics} {outcome}"
            + (f" -> version {version}" if version else "")
        )
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
    print(f"serving {source}; request log {log}")  # the server logs the address it binds
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
    from mlops.registry import CHAMPION, RegistryError, resolve_version
    from pipelines.local import run_locally, summarize

    try:  # before the pipeline starts: without a model there is nothing to monitor
        resolve_version(config, args.version or CHAMPION)
    except RegistryError as exc:
        raise ConfigError(
            f"{exc}: train and register a model first (`mlops run`), or pass --version"
        ) from exc
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
        verbose=args.verbose,
        source=source,
        previous_source=args.previous or "",
        model_version=args.version,
    )
    print()
    print(summarize(result.manifest))
    monitor = result.manifest["results"].get("monitor") or {}
    for finding in monitor.get("findings", []):
        print(f"  finding: {finding.get('message', finding)}")
    abstentions = monitor.get("abstentions")
    if abstentions and abstentions["count"]:
        print(f"  abstentions: {abstentions['count']} of {abstentions['of']} served predictions")
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
        "run.json, report.html) and a new version in <local.root>/registry/. A step that "
        "completed before (in any earlier run, also one that crashed later) for the same "
        "inputs, config sections it reads and code is reused from that run and shown as cached; "
        "find-champion and register always run.",
    )
    _add_config(run)
    run.add_argument(
        "--run-id", help="the run's id (default: <name>-<date>-<time>-<random>); must be new"
    )
    run.add_argument(
        "--verbose", "-v", action="store_true", help="show every step's full output live"
    )
    run.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="recompute every step instead of reusing earlier runs' results (the new results "
        "are cached for later runs)",
    )
    run.set_defaults(func=cmd_run)

    compile_ = commands.add_parser(
        "compile",
        help="compile a pipeline (or all of them) to PipelineSpec JSON",
        description="Compile a pipeline for a target. Reads the config (and --image); writes the "
        "spec to --output, or <name>-<pipeline>-<target>.json in --output-dir (default "
        "<local.root>/compiled/).",
    )
    _add_config(compile_)
    compile_.add_argument("--target", choices=TARGETS, default="vertex")
    compile_.add_argument(
        "--pipeline",
        choices=(*PIPELINES, "all"),
        action="append",
        help="which pipeline (repeatable; default training); `all` compiles every pipeline",
    )
    compile_.add_argument("--output", "-o", help="where to write the compiled spec")
    compile_.add_argument(
        "--output-dir", help="write <name>-<pipeline>-<target>.json files into this directory"
    )
    compile_.add_argument(
        "--image",
        help="the image every step runs in, instead of the config's vertex.image: "
        "REGISTRY/PATH/NAME:TAG or REGISTRY/PATH/NAME@sha256:<64 hex>",
    )
    compile_.add_argument(
        "--gpu-image", help="its CUDA build, for GPU training (default vertex.gpu_image)"
    )
    compile_.add_argument(
        "--parent-model",
        help="instead of the config's vertex.parent_model (projects/P/locations/L/models/ID): "
        "the model the Vertex prediction pipeline deploys and training adds versions to",
    )
    compile_.set_defaults(func=cmd_compile)

    submit = commands.add_parser(
        "submit",
        help="submit the training pipeline to Vertex AI Pipelines",
        description="Compile (or take --template) and submit an aiplatform.PipelineJob. Project, "
        "region, pipeline root and service account come from flags or the config's vertex section. "
        "The run joins the Vertex AI experiment vertex.experiment (default: the pipeline's name, "
        "e.g. penguins-training). --dry-run prints the job and sends nothing.",
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

    publish = commands.add_parser(
        "publish",
        help="upload compiled pipeline templates to an Artifact Registry KFP repository",
        description="Reads the compiled specs (--template) and uploads each to --host with the "
        "--tag tags; or, with --promote VERSION_OR_TAG, moves the --tag tags onto that uploaded "
        "version of each --package (or --pipeline's package). Writes nothing locally except "
        "--output-json (package, version, tags, template URI per template).",
    )
    _add_config(publish)
    publish.add_argument(
        "--host", required=True, help="https://REGION-kfp.pkg.dev/PROJECT/REPOSITORY"
    )
    publish.add_argument(
        "--template", nargs="+", default=[], metavar="FILE", help="compiled specs to upload"
    )
    publish.add_argument(
        "--tag", action="append", default=[], help="a tag for the version (repeatable)"
    )
    publish.add_argument(
        "--promote",
        metavar="VERSION_OR_TAG",
        help="tag an uploaded version (sha256:... or an existing tag) instead of uploading",
    )
    publish.add_argument(
        "--package", action="append", default=[], help="a package to promote (repeatable)"
    )
    publish.add_argument(
        "--pipeline",
        choices=(*PIPELINES, "all"),
        action="append",
        help="promote this pipeline's package, <name>-<pipeline> (repeatable; `all`: every one)",
    )
    publish.add_argument("--output-json", help="write what was published here as JSON")
    publish.set_defaults(func=cmd_publish)

    schedule = commands.add_parser(
        "schedule",
        help="create or update the Vertex AI schedule that runs a pipeline template",
        description="Builds the PipelineJob `mlops submit` would send for --template (a registry "
        "https://REGION-kfp.pkg.dev/... version, gs:// or a file) and creates the schedule "
        "<name>-<pipeline>-schedule with --cron, or updates the existing one (found by display "
        "name) in place. Project, region, pipeline root and service account come from flags or "
        "the config's vertex section. --dry-run prints the schedule and sends nothing.",
    )
    _add_config(schedule)
    schedule.add_argument("--pipeline", choices=PIPELINES, default="training")
    schedule.add_argument(
        "--cron",
        required=True,
        help='cron expression, e.g. "0 3 * * *" or "TZ=Europe/Paris 0 3 * * *"',
    )
    schedule.add_argument("--template", required=True, help="the template URI or file to run")
    _add_images(schedule)
    schedule.add_argument("--project")
    schedule.add_argument("--region")
    schedule.add_argument("--pipeline-root", help="gs:// URI for pipeline artifacts")
    schedule.add_argument("--service-account")
    schedule.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline parameter for every scheduled run (repeatable)",
    )
    schedule.add_argument(
        "--max-concurrent-runs", type=int, default=1, help="runs allowed at once (default 1)"
    )
    schedule.add_argument(
        "--dry-run", action="store_true", help="print what would be sent; send nothing"
    )
    schedule.set_defaults(func=cmd_schedule)

    models = commands.add_parser(
        "models",
        help="list the versions and aliases in the local model registry",
        description="Reads <local.root>/registry/<name>/ and prints versions, aliases and metrics.",
    )
    _add_config(models)
    models.set_defaults(func=cmd_models)

    runs = commands.add_parser(
        "runs",
        help="list the local runs with config hash, data fingerprint and metrics, or compare two",
        description="Reads <local.root>/runs/*/run.json. --compare A B prints the config keys, "
        "data fingerprint and metrics that differ between two runs. --prune KEEP deletes older "
        "runs and their step-cache entries.",
    )
    _add_config(runs)
    runs.add_argument("--compare", nargs=2, metavar="RUN_ID", help="two run ids to compare")
    runs.add_argument(
        "--prune",
        type=_at_least_one,
        metavar="KEEP",
        help="delete all but the newest KEEP runs (never a running one) and the step-cache "
        "entries that pointed into them; registered models are copies and stay",
    )
    runs.set_defaults(func=cmd_runs)

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
        type=_percent,
        help="percent of traffic for this version, 0-100 (default serving.canary_percent)",
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
        "--verbose", "-v", action="store_true", help="show every step's full output live"
    )
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

    from mlops.registry import RegistryError

    args = build_parser().parse_args(argv)
    try:
        if args.config_json:
            config = PipelineConfig.from_json(Path(args.config_json).read_text())
        else:
            config = load_config(args.config)
        return args.func(args, config)
    except (ConfigError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DefaultCredentialsError, RefreshError):
        from mlops.gcs import LOGIN_HINT

        print(
            f"error: no usable Google Cloud credentials. Log in with {LOGIN_HINT}, then run the "
            "command again; --dry-run needs no credentials.",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
