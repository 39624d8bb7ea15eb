"""cloudbuild.yaml holds together offline: pinned step images, substitutions declared, used and
documented, the stage order, stage guards, and the steps that need neither Docker nor Google
Cloud (and the Docker ones against a stand-in `docker`) run here through the same script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

CLOUDBUILD = REPO / "cloudbuild.yaml"
STEPS_SH = REPO / "cloudbuild" / "steps.sh"
# The names the Terraform triggers set; they must stay exactly these.
TRIGGER_SUBSTITUTIONS = {
    "_REGION",
    "_REPOSITORY",
    "_PIPELINE_ROOT",
    "_SERVICE_ACCOUNT",
    "_KFP_REPOSITORY",
    "_CONFIG",
    "_RUN_TRAINING",
}
MAIN_ONLY = ["build-cpu", "build-gpu", "push", "digest", "compile", "publish", "run-training"]
RELEASE_ONLY = ["promote", "schedule"]
EVERY_STAGE = ["install", "lint", "test-fast", "compile-check"]
GCPC_IMAGE = "gcr.io/ml-pipeline/google-cloud-pipeline-components:"
SUBSTITUTION = re.compile(r"\$\{(_[A-Z0-9_]+)\}|\$(_[A-Z0-9_]+)")


@pytest.fixture(scope="module")
def build() -> dict:
    return yaml.safe_load(CLOUDBUILD.read_text())


def _header() -> str:
    lines = CLOUDBUILD.read_text().splitlines()
    return "\n".join(line for line in lines[: lines.index("steps:")] if line.startswith("#"))


def _used(value) -> set[str]:
    return {a or b for a, b in SUBSTITUTION.findall(json.dumps(value))}


def test_every_step_image_is_pinned(build: dict) -> None:
    pinned = re.compile(r"^[a-z0-9.\-/]+(?::(?P<tag>[A-Za-z0-9_.-]+)|@sha256:[0-9a-f]{64})$")
    for step in build["steps"]:
        match = pinned.match(step["name"])
        assert match, f"step {step['id']} image {step['name']!r} has no tag or digest"
        tag = match.group("tag")
        assert tag is None or (tag != "latest" and re.search(r"\d", tag)), step["name"]


def test_substitutions_are_declared_used_and_documented(build: dict) -> None:
    declared = set(build["substitutions"])
    assert declared >= TRIGGER_SUBSTITUTIONS
    outside = {key: value for key, value in build.items() if key != "substitutions"}
    used = _used(outside)
    assert used <= declared, f"used but not declared: {sorted(used - declared)}"
    assert declared <= used, f"declared but never used: {sorted(declared - used)}"
    header = _header()
    undocumented = [name for name in declared if not re.search(rf"^#\s+{name}\s", header, re.M)]
    assert not undocumented, f"not documented in the header comment: {undocumented}"
    assert all(isinstance(value, str) for value in build["substitutions"].values())


def test_every_substitution_reaches_the_step_script(build: dict) -> None:
    script = STEPS_SH.read_text()
    env = dict(item.split("=", 1) for item in build["options"]["env"])
    for name, value in env.items():
        assert re.search(rf"\$\{{?{name}\b", script), f"steps.sh never reads ${name}"
        for substitution in _used(value):
            assert name == substitution.lstrip("_"), f"{name} carries {substitution}"


def test_build_options(build: dict) -> None:
    assert build["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    assert build["serviceAccount"] == "projects/$PROJECT_ID/serviceAccounts/${_SERVICE_ACCOUNT}"
    assert re.fullmatch(r"\d+s", build["timeout"])


def test_steps_run_in_stage_order(build: dict) -> None:
    ids = [step["id"] for step in build["steps"]]
    assert all("waitFor" not in step for step in build["steps"]), "steps run one after another"
    for step in build["steps"]:
        assert step["args"] == ["cloudbuild/steps.sh", step["id"]]
    order = [
        {"install"},
        {"lint", "test-fast", "compile-check"},
        {"build-cpu", "build-gpu"},
        {"push"},
        {"digest"},
        {"compile"},
        {"publish"},
        {"run-training"},
    ]
    for before, after in zip(order, order[1:], strict=False):
        assert max(ids.index(i) for i in before) < min(ids.index(i) for i in after), (
            before,
            after,
        )
    assert ids.index("compile-check") < ids.index("promote") < ids.index("schedule")
    script_steps = set(re.findall(r"^  ([a-z-]+)\)$", STEPS_SH.read_text(), re.M))
    assert script_steps == set(ids)
    assert set(ids) == set(EVERY_STAGE + MAIN_ONLY + RELEASE_ONLY)


def _run(
    step: str, env: dict[str, str], path_first: Path | None = None
) -> subprocess.CompletedProcess:
    full = {
        "PATH": (f"{path_first}:" if path_first else "") + os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHON": sys.executable,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **env,
    }
    return subprocess.run(
        ["bash", str(STEPS_SH), step],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def refusing_tools(tmp_path: Path) -> Path:
    """docker, gcloud and make that fail if called: a guarded step must not reach them."""
    bin_dir = tmp_path / "refusing"
    bin_dir.mkdir()
    for tool in ("docker", "gcloud", "make"):
        (bin_dir / tool).write_text("#!/bin/sh\necho called >&2\nexit 97\n")
        (bin_dir / tool).chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("step", "stage"),
    [(step, "pr") for step in MAIN_ONLY + RELEASE_ONLY]
    + [(step, "release") for step in MAIN_ONLY]
    + [(step, "main") for step in RELEASE_ONLY],
)
def test_main_and_release_steps_skip_in_other_stages(
    step: str, stage: str, refusing_tools: Path, tmp_path: Path
) -> None:
    result = _run(
        step,
        {"STAGE": stage, "PYTHON": "/bin/false", "WORKSPACE_OUT": str(tmp_path)},
        refusing_tools,
    )
    assert result.returncode == 0, result.stderr
    assert f"skipped in stage {stage}" in result.stdout
    assert list(tmp_path.iterdir()) == [refusing_tools]


def test_training_run_is_opt_in_and_stages_are_checked(refusing_tools: Path) -> None:
    result = _run("run-training", {"STAGE": "main", "RUN_TRAINING": "false"}, refusing_tools)
    assert result.returncode == 0 and "_RUN_TRAINING is not true" in result.stdout
    result = _run("lint", {"STAGE": "prod"}, refusing_tools)
    assert result.returncode == 2 and "STAGE must be" in result.stderr
    result = _run("promote", {"STAGE": "release", "PROJECT_ID": "p", "KFP_REPOSITORY": "k"})
    assert result.returncode == 2 and "COMMIT_SHA is empty" in result.stderr


def _executor_images(spec: dict) -> set[str]:
    executors = spec["deploymentSpec"]["executors"]
    return {e["container"]["image"] for e in executors.values() if "container" in e}


def test_pr_compile_check_compiles_every_pipeline(tmp_path: Path) -> None:
    result = _run(
        "compile-check",
        {"STAGE": "pr", "CONFIG": "configs/taxi.yaml", "WORKSPACE_OUT": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    specs = sorted(p.name for p in (tmp_path / "compiled-check").iterdir())
    assert specs == [
        f"taxi-{kind}-vertex.json" for kind in ("monitoring", "prediction", "training")
    ]


FAKE_DOCKER = r"""#!/usr/bin/env bash
# Stands in for docker: records each call; build lists its context; inspect answers a digest.
echo "$*" >>"$DOCKER_LOG"
case "$1" in
  build) tar -t >"$DOCKER_LOG.context.$(echo "$*" | grep -o 'ACCELERATOR=[a-z]*')" ;;
  inspect) image="${@: -1}"; echo "other.registry/x@sha256:$(printf '0%.0s' {1..64})"
           echo "${image%:*}@sha256:$DIGEST" ;;
esac
"""


def test_main_stage_builds_pushes_resolves_the_digest_and_compiles_against_it(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    out = tmp_path / "workspace"
    out.mkdir()
    log = tmp_path / "docker.log"
    sha = "0123456789abcdef0123456789abcdef01234567"
    digest = "c" * 64
    env = {
        "STAGE": "main",
        "PROJECT_ID": "my-project",
        "REGION": "europe-west4",
        "REPOSITORY": "mlops",
        "COMMIT_SHA": sha,
        "CONFIG": "configs/taxi.yaml",
        "PARENT_MODEL": "projects/my-project/locations/europe-west4/models/123",
        "WORKSPACE_OUT": str(out),
        "DOCKER_LOG": str(log),
        "DIGEST": digest,
    }
    for step in ("build-cpu", "build-gpu", "push", "digest", "compile"):
        result = _run(step, env, bin_dir)
        assert result.returncode == 0, f"{step}: {result.stdout}\n{result.stderr}"
    image = "europe-west4-docker.pkg.dev/my-project/mlops/mlops-template"
    calls = log.read_text().splitlines()
    assert calls == [
        f"build --build-arg ACCELERATOR=cpu -t {image}:{sha} -f Dockerfile -",
        f"build --build-arg ACCELERATOR=gpu -t {image}-gpu:{sha} -f Dockerfile -",
        f"push {image}:{sha}",
        f"push {image}-gpu:{sha}",
        f"inspect --format {{{{range .RepoDigests}}}}{{{{println .}}}}{{{{end}}}} {image}:{sha}",
        f"inspect --format {{{{range .RepoDigests}}}}{{{{println .}}}}{{{{end}}}} {image}-gpu:{sha}",
    ]
    context = Path(f"{log}.context.ACCELERATOR=cpu").read_text().splitlines()
    assert "./Dockerfile" in context and "./requirements.lock" in context
    assert not [name for name in context if name.startswith(("./.venv", "./.git/"))]
    pinned = f"{image}@sha256:{digest}"
    assert (out / "image_digest.txt").read_text().strip() == pinned
    assert (out / "image_digest_gpu.txt").read_text().strip() == f"{image}-gpu@sha256:{digest}"
    specs = {p.name: json.loads(p.read_text()) for p in (out / "compiled").iterdir()}
    assert sorted(specs) == [
        f"taxi-{kind}-vertex.json" for kind in ("monitoring", "prediction", "training")
    ]
    for name, spec in specs.items():
        own = {i for i in _executor_images(spec) if not i.startswith(GCPC_IMAGE)}
        # every pipeline's own steps run the pinned project image (prediction: the champion lookup)
        assert own == {pinned}, name
        config = spec["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"]
        assert json.loads(config)["vertex"]["image"] == pinned, name
        assert ":latest" not in json.dumps(spec), name
    train = json.dumps(specs["taxi-training-vertex.json"]["components"]["comp-train"])
    assert f'"image_uri": "{image}-gpu@sha256:{digest}"' in train  # a T4 job: the GPU image


RECORDING_PYTHON = r"""#!/usr/bin/env bash
# Stands in for the venv's python: `-m pipelines.cli ...` calls (they would reach Google Cloud)
# are recorded as JSON lines; anything else (the steps' JSON lookups) runs for real.
if [ "$1" = "-m" ]; then
  exec "$REAL_PYTHON" -c 'import json, sys
open(sys.argv[1], "a").write(json.dumps(sys.argv[2:]) + "\n")' "$CLI_LOG" "$@"
fi
exec "$REAL_PYTHON" "$@"
"""


def test_publish_run_promote_and_schedule_steps_issue_valid_mlops_commands(
    tmp_path: Path,
) -> None:
    from pipelines import cli

    python = tmp_path / "python"
    python.write_text(RECORDING_PYTHON)
    python.chmod(0o755)
    out = tmp_path / "workspace"
    (out / "compiled").mkdir(parents=True)
    for kind in ("training", "monitoring"):
        (out / "compiled" / f"taxi-{kind}-vertex.json").write_text("{}")
    host = "https://europe-west4-kfp.pkg.dev/my-project/kfp"
    uris = {
        kind: f"{host}/taxi-{kind}/sha256:{kind[0] * 64}" for kind in ("training", "monitoring")
    }
    listing = json.dumps(
        [{"package": f"taxi-{kind}", "template_uri": uri} for kind, uri in uris.items()]
    )
    (out / "published.json").write_text(listing)
    (out / "released.json").write_text(listing)
    log = tmp_path / "cli.log"
    sha = "0123456789abcdef0123456789abcdef01234567"
    env = {
        "PYTHON": str(python),
        "REAL_PYTHON": sys.executable,
        "CLI_LOG": str(log),
        "WORKSPACE_OUT": str(out),
        "PROJECT_ID": "my-project",
        "REGION": "europe-west4",
        "KFP_REPOSITORY": "kfp",
        "PIPELINE_ROOT": "gs://bucket/root",
        "SERVICE_ACCOUNT": "runner@my-project.iam.gserviceaccount.com",
        "CONFIG": "configs/taxi.yaml",
        "COMMIT_SHA": sha,
        "TAG_NAME": "v1.2.0",
        "RUN_TRAINING": "true",
        "TRAINING_CRON": "0 3 * * 1",
        "MONITORING_CRON": "0 5 * * *",
    }
    for stage, step in [
        ("main", "publish"),
        ("main", "run-training"),
        ("release", "promote"),
        ("release", "schedule"),
    ]:
        result = _run(step, {**env, "STAGE": stage})
        assert result.returncode == 0, f"{step}: {result.stdout}\n{result.stderr}"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(call[:2] == ["-m", "pipelines.cli"] for call in calls)
    parsed = [cli.build_parser().parse_args(call[2:]) for call in calls]
    publish, submit, promote, train_schedule, monitor_schedule = parsed
    assert publish.command == "publish" and publish.host == host
    assert sorted(Path(t).name for t in publish.template) == [
        "taxi-monitoring-vertex.json",
        "taxi-training-vertex.json",
    ]
    assert publish.tag == [f"sha-{sha}", "latest"]
    assert publish.output_json == str(out / "published.json")
    assert submit.command == "submit" and submit.template == uris["training"]
    assert (submit.project, submit.region, submit.pipeline_root) == (
        "my-project",
        "europe-west4",
        "gs://bucket/root",
    )
    assert submit.service_account == env["SERVICE_ACCOUNT"]
    assert promote.command == "publish" and promote.promote == f"sha-{sha}"
    assert promote.pipeline == ["training", "monitoring", "prediction"]
    assert promote.tag == ["v1.2.0", "release"] and not promote.template
    assert promote.config == "configs/taxi.yaml"
    assert train_schedule.command == monitor_schedule.command == "schedule"
    assert (train_schedule.pipeline, train_schedule.cron, train_schedule.template) == (
        "training",
        "0 3 * * 1",
        uris["training"],
    )
    assert (monitor_schedule.pipeline, monitor_schedule.cron, monitor_schedule.template) == (
        "monitoring",
        "0 5 * * *",
        uris["monitoring"],
    )
    assert monitor_schedule.param == [f"training_template_uri={uris['training']}"]
    assert monitor_schedule.service_account == env["SERVICE_ACCOUNT"]
