"""`mlops`: run the pipeline locally, compile it, submit it to Vertex AI, inspect the registry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlops.config import DEFAULT_CONFIG, ConfigError, PipelineConfig, load_config


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        default=str(DEFAULT_CONFIG),
        help=f"pipeline config YAML (default: {DEFAULT_CONFIG.relative_to(DEFAULT_CONFIG.parents[1])})",
    )


def cmd_run(args: argparse.Namespace, config: PipelineConfig) -> int:
    from pipelines.local import run_training_locally, summarize

    result = run_training_locally(config)
    print()
    print(summarize(result.manifest))
    return 0 if result.succeeded else 1


def _default_template(config: PipelineConfig, target: str) -> Path:
    return Path(config.local.root) / "compiled" / f"{config.name}-training-{target}.json"


def cmd_compile(args: argparse.Namespace, config: PipelineConfig) -> int:
    from pipelines.vertex import compile_training_pipeline

    output = Path(args.output) if args.output else _default_template(config, args.target)
    compile_training_pipeline(config, args.target, output)
    print(f"compiled {config.name} training pipeline for {args.target}: {output}")
    return 0


def cmd_submit(args: argparse.Namespace, config: PipelineConfig) -> int:
    from pipelines.vertex import (
        SubmitSettings,
        build_pipeline_job,
        compile_training_pipeline,
        describe_job,
        submit,
    )

    settings = SubmitSettings.resolve(
        config, args.project, args.region, args.pipeline_root, args.service_account
    )
    template = Path(args.template) if args.template else _default_template(config, "vertex")
    if not args.template:
        compile_training_pipeline(config, "vertex", template)
    credentials = None
    if args.dry_run:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()  # a dry run must not look for real credentials
    job = build_pipeline_job(config, template, settings, credentials=credentials)
    if args.dry_run:
        print("dry run: this PipelineJob would be submitted (nothing was sent):")
        print(describe_job(job, settings))
        return 0
    submit(job, settings)
    print(f"submitted {job.resource_name}")
    return 0


def cmd_models(args: argparse.Namespace, config: PipelineConfig) -> int:
    from components.register import registry_root
    from mlops.registry import LocalModelRegistry

    rows = LocalModelRegistry(registry_root(config)).describe(config.name)
    if not rows:
        print(f"no versions of {config.name!r} in {registry_root(config)}")
        return 0
    print(json.dumps(rows, indent=2))
    return 0


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
    run.set_defaults(func=cmd_run)

    compile_ = commands.add_parser(
        "compile",
        help="compile the training pipeline to a PipelineSpec JSON",
        description="Compile the pipeline for a target. Reads the config; writes the spec to "
        "--output (default <local.root>/compiled/<name>-training-<target>.json).",
    )
    _add_config(compile_)
    compile_.add_argument("--target", choices=["local", "vertex"], default="vertex")
    compile_.add_argument("--output", "-o", help="where to write the compiled spec")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        return args.func(args, config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
