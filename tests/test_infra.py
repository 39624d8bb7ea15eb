"""infra/ parses and keeps the properties the project relies on.

No terraform binary here: this parses every file with python-hcl2 and checks the structure
(least-privilege IAM, a locked-down bucket, the CI triggers' contract with cloudbuild.yaml,
variables, outputs for the config). Only `terraform plan` on a real project proves that the
provider accepts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import hcl2
import pytest
import yaml

from mlops.config import PipelineConfig
from tests.conftest import REPO

INFRA = REPO / "infra"
HCL_FILES = sorted(
    path for pattern in ("*.tf", "*.tfvars", "*.hcl") for path in INFRA.rglob(pattern)
)
TF_FILES = [path for path in HCL_FILES if path.suffix == ".tf"]
TFVARS_FILES = [path for path in HCL_FILES if path.suffix == ".tfvars"]
OPTIONS = hcl2.SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)

SUBSTITUTIONS = {
    "_STAGE",
    "_REGION",
    "_REPOSITORY",
    "_PIPELINE_ROOT",
    "_SERVICE_ACCOUNT",
    "_KFP_REPOSITORY",
    "_CONFIG",
    "_RUN_TRAINING",
}
REQUIRED_APIS = {
    "aiplatform.googleapis.com",
    "dataflow.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "storage.googleapis.com",
    "bigquery.googleapis.com",
    "cloudscheduler.googleapis.com",
    "monitoring.googleapis.com",
    "iam.googleapis.com",
    "compute.googleapis.com",
}
# Project-level grants are allowed only for permissions that have no narrower resource.
PROJECT_LEVEL_ROLES = {
    "roles/aiplatform.user",
    "roles/dataflow.developer",
    "roles/dataflow.worker",
    "roles/bigquery.jobUser",
    "roles/logging.logWriter",
}
REF = r"[A-Za-z_][A-Za-z0-9_-]*"


def _parse(path: Path) -> dict:
    try:
        return hcl2.load(path.open(), serialization_options=OPTIONS)
    except Exception as error:  # the parser's own errors name no file
        raise AssertionError(f"{path.relative_to(REPO)} does not parse: {error}") from error


@dataclass
class Module:
    """The root module's blocks, merged across its files."""

    resources: dict[tuple[str, str], dict] = field(default_factory=dict)
    data: dict[tuple[str, str], dict] = field(default_factory=dict)
    variables: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    locals: dict[str, object] = field(default_factory=dict)
    terraform: list[dict] = field(default_factory=list)

    def of_type(self, kind: str) -> dict[str, dict]:
        return {name: body for (type_, name), body in self.resources.items() if type_ == kind}


def _add(target: dict, key, value, path: Path) -> None:
    assert key not in target, f"{path.name}: {key} is declared twice"
    target[key] = value


@pytest.fixture(scope="module")
def module() -> Module:
    result = Module()
    for path in TF_FILES:
        parsed = _parse(path)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    _add(result.resources, (kind, name), body, path)
        for block in parsed.get("data", []):
            for kind, named in block.items():
                for name, body in named.items():
                    _add(result.data, (kind, name), body, path)
        for block in parsed.get("variable", []):
            for name, body in block.items():
                _add(result.variables, name, body, path)
        for block in parsed.get("output", []):
            for name, body in block.items():
                _add(result.outputs, name, body, path)
        for block in parsed.get("locals", []):
            for name, value in block.items():
                _add(result.locals, name, value, path)
        result.terraform += parsed.get("terraform", [])
    return result


def _refs(value: object, prefix: str) -> set[str]:
    """Names referenced as `<prefix>.<name>` anywhere in a parsed value."""
    return set(re.findall(rf"\b{re.escape(prefix)}\.({REF})", repr(value)))


def _single(blocks: list[dict]) -> dict:
    assert len(blocks) == 1, blocks
    return blocks[0]


@pytest.mark.parametrize("path", HCL_FILES, ids=lambda path: str(path.relative_to(INFRA)))
def test_every_file_parses(path: Path) -> None:
    assert _parse(path), f"{path.relative_to(REPO)} is empty"


def test_the_stack_is_there() -> None:
    names = {path.name for path in TF_FILES}
    assert {"versions.tf", "variables.tf", "outputs.tf"} <= names
    assert {path.name for path in TFVARS_FILES} == {"dev.tfvars", "prod.tfvars"}


def test_versions_pin_terraform_and_the_google_provider(module: Module) -> None:
    terraform = _single(module.terraform)
    assert terraform["required_version"] == ">= 1.5"
    providers = _single(terraform["required_providers"])
    assert providers["google"]["source"] == "hashicorp/google"
    assert re.fullmatch(r"~> 6\.\d+(\.\d+)?", providers["google"]["version"])


def test_required_apis_are_enabled(module: Module) -> None:
    services = module.locals["services"]
    assert set(re.findall(r"[a-z]+\.googleapis\.com", services)) >= REQUIRED_APIS
    # Cloud KMS only with CMEK.
    assert re.search(r'var\.cmek_enabled \? \["cloudkms\.googleapis\.com"\] : \[\]', services)
    enabled = module.of_type("google_project_service")["enabled"]
    assert enabled["for_each"] == "${toset(local.services)}"
    assert enabled["disable_on_destroy"] is False


def test_no_basic_roles_anywhere() -> None:
    for path in HCL_FILES:
        found = re.findall(r"roles/(?:owner|editor|viewer)\b", path.read_text())
        assert not found, f"{path.relative_to(REPO)} grants {found}"


def test_iam_grants_go_to_declared_service_accounts_at_the_narrowest_scope(
    module: Module,
) -> None:
    declared = set(module.of_type("google_service_account"))
    assert {"pipelines", "cloudbuild", "serving", "monitoring"} <= declared
    # Every reference to a service account, anywhere, is to a declared one.
    for key, body in module.resources.items():
        assert _refs(body, "google_service_account") <= declared, key
    assert _refs(module.locals, "google_service_account") <= declared
    assert _refs(module.outputs, "google_service_account") <= declared

    accounts = module.locals["service_accounts"]
    assert {name: f"${{google_service_account.{name}}}" for name in declared} == accounts

    grants = module.locals["grants"]
    for scope, table in grants.items():
        assert set(table) <= set(accounts), f"{scope} grants to undeclared {set(table)}"
        for account, roles in table.items():
            for role in roles:
                assert role.startswith("roles/"), (scope, account, role)
                assert "serviceAccount" not in role, f"actAs belongs on the account: {role}"
    project_roles = {role for roles in grants["project"].values() for role in roles}
    assert project_roles <= PROJECT_LEVEL_ROLES, project_roles - PROJECT_LEVEL_ROLES
    # What a resource can carry stays on the resource.
    assert grants["bucket"]["pipelines"] and grants["images"]["cloudbuild"]
    assert grants["templates"]["cloudbuild"] and grants["request_logs"]["monitoring"]

    act_as = module.locals["act_as"]
    for target, users in act_as.items():
        assert {target, *users} <= set(accounts), (target, users)
    assert "cloudbuild" in act_as["pipelines"]

    # Each table is bound at its own scope, and only through these members.
    scoped = {
        "google_project_iam_member": "project",
        "google_storage_bucket_iam_member": "bucket",
        "google_bigquery_dataset_iam_member": "request_logs",
    }
    iam = {
        key: body
        for key, body in module.resources.items()
        if re.search(r"_iam_(member|binding|policy)$", key[0])
    }
    for (kind, name), body in iam.items():
        assert kind.endswith("_iam_member"), f"{kind}.{name}: authoritative IAM clobbers others"
        if kind in scoped:
            assert body["for_each"] == f"${{local.bindings.{scoped[kind]}}}", (kind, name)
    bound = {body["for_each"] for body in iam.values()}
    assert {f"${{local.bindings.{scope}}}" for scope in grants} <= bound
    assert iam[("google_service_account_iam_member", "act_as")]["role"] == (
        "roles/iam.serviceAccountUser"
    )


def test_pipeline_root_bucket_is_locked_down(module: Module) -> None:
    bucket = module.of_type("google_storage_bucket")["pipeline_root"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert _single(bucket["versioning"])["enabled"] is True
    actions = [_single(rule["action"])["type"] for rule in bucket["lifecycle_rule"]]
    assert "Delete" in actions
    encryption = _single(bucket["dynamic"])["encryption"]
    assert "var.cmek_enabled" in encryption["for_each"]


def test_ci_triggers_run_cloudbuild_yaml_with_the_agreed_substitutions(module: Module) -> None:
    triggers = module.of_type("google_cloudbuild_trigger")
    trigger = triggers["ci"]
    assert trigger["filename"] == "cloudbuild.yaml"
    assert set(trigger["substitutions"]) == SUBSTITUTIONS
    assert trigger["service_account"] == "${google_service_account.cloudbuild.id}"
    assert trigger["for_each"] == "${local.build_triggers}"
    github = _single(trigger["github"])
    events = {name: body for block in github["dynamic"] for name, body in block.items()}
    assert set(events) == {"pull_request", "push"}
    assert _single(events["push"]["content"]).keys() >= {"branch", "tag"}

    kinds = module.locals["build_triggers"]
    main = "^${var.main_branch}$"
    pull_requests = [t for t in kinds.values() if t["pull_request"] is True]
    pushes = [t for t in kinds.values() if t["pull_request"] is False]
    assert [t["branch"] for t in pull_requests] == [main]
    assert pull_requests[0]["run_training"] is False
    assert [t["branch"] for t in pushes if t["tag"] is None] == [main]
    tags = [t for t in pushes if t["branch"] is None]
    assert [t["tag"] for t in tags] == ["^v.*"]
    assert tags[0]["run_training"] is True
    assert [t["stage"] for t in kinds.values()] == ["pr", "main", "release"]


def test_cloudbuild_yaml_reads_every_substitution_the_triggers_pass() -> None:
    cloudbuild = REPO / "cloudbuild.yaml"
    if not cloudbuild.exists():
        pytest.skip("cloudbuild.yaml is not in this tree yet")
    declared = yaml.safe_load(cloudbuild.read_text())["substitutions"]
    missing = sorted(SUBSTITUTIONS - set(declared))
    assert not missing, f"cloudbuild.yaml declares no {missing}"


def test_schedules_create_vertex_pipeline_jobs_as_an_account_that_may_run_them(
    module: Module,
) -> None:
    job = module.of_type("google_cloud_scheduler_job")["pipeline"]
    assert 'schedule.cron != ""' in job["for_each"], "an empty cron must create no job"
    assert _single(job["retry_config"])["retry_count"] == 0
    target = _single(job["http_target"])
    assert target["http_method"] == "POST"
    assert re.fullmatch(
        r"https://\$\{var\.region\}-aiplatform\.googleapis\.com/v1/projects/\$\{var\.project_id\}"
        r"/locations/\$\{var\.region\}/pipelineJobs",
        target["uri"],
    )
    for key in ("templateUri", "serviceAccount", "gcsOutputDirectory", "encryptionSpec"):
        assert f"{key} = " in target["body"], key
    oauth = _single(target["oauth_token"])
    assert oauth["service_account_email"] == "${each.value.service_account}"
    assert oauth["scope"] == "https://www.googleapis.com/auth/cloud-platform"

    schedules = module.locals["schedules"]
    assert {kind: s["cron"] for kind, s in schedules.items()} == {
        "training": "${var.training_schedule}",
        "monitoring": "${var.monitoring_schedule}",
    }
    act_as = module.locals["act_as"]
    for kind, schedule in schedules.items():
        (account,) = _refs(schedule["service_account"], "google_service_account")
        # The token's account creates the job and names itself as the job's account.
        assert account in act_as[account], f"{kind}: {account} may not act as itself"
        roles = module.locals["grants"]["project"][account]
        assert "roles/aiplatform.user" in roles, kind


def test_cmek_and_network_exist_only_when_asked_for(module: Module) -> None:
    for kind in ("google_kms_key_ring", "google_kms_crypto_key"):
        for name, body in module.of_type(kind).items():
            assert body["count"] == "${var.cmek_enabled ? 1 : 0}", (kind, name)
    key = module.of_type("google_kms_crypto_key")["cmek"]
    assert key["rotation_period"] == "${var.kms_rotation_period}"
    grant = module.of_type("google_kms_crypto_key_iam_member")["service_agents"]
    assert grant["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    # Every resource that stores data waits for its agent's grant on the key.
    for kind, name in (
        ("google_storage_bucket", "pipeline_root"),
        ("google_artifact_registry_repository", "images"),
        ("google_artifact_registry_repository", "pipelines"),
        ("google_bigquery_dataset", "request_logs"),
    ):
        body = module.resources[(kind, name)]
        assert "${google_kms_crypto_key_iam_member.service_agents}" in body["depends_on"], name
        assert "cmek_enabled" in repr(body), f"{name} ignores CMEK"

    for kind in ("google_compute_network", "google_compute_subnetwork", "google_compute_firewall"):
        resources = module.of_type(kind)
        assert resources, kind
        for name, body in resources.items():
            assert body["count"] == "${var.create_network ? 1 : 0}", (kind, name)
    subnet = module.of_type("google_compute_subnetwork")["workers"]
    assert subnet["private_ip_google_access"] is True


def test_variables_are_declared_and_used(module: Module) -> None:
    declared = set(module.variables)
    everything_but_declarations = [
        module.resources,
        module.data,
        module.outputs,
        module.locals,
        module.terraform,
    ]
    # Providers are not collected above: read them straight from versions.tf.
    everything_but_declarations.append(_parse(INFRA / "versions.tf").get("provider"))
    used = _refs(everything_but_declarations, "var")
    assert used - declared == set(), f"used but not declared: {sorted(used - declared)}"
    assert declared - used == set(), f"declared but never used: {sorted(declared - used)}"


@pytest.mark.parametrize("path", TFVARS_FILES, ids=lambda path: path.name)
def test_tfvars_set_only_declared_variables_and_every_required_one(
    module: Module, path: Path
) -> None:
    values = _parse(path)
    unknown = set(values) - set(module.variables)
    assert not unknown, f"{path.name} sets undeclared {sorted(unknown)}"
    required = {name for name, body in module.variables.items() if "default" not in body}
    assert required - set(values) == set(), f"{path.name} misses {required - set(values)}"
    assert values["environment"] == path.stem


def test_outputs_fill_the_config(module: Module) -> None:
    expected = {
        "vertex_project",
        "vertex_region",
        "vertex_pipeline_root",
        "vertex_service_account",
        "image_repository",
        "kfp_repository_url",
        "serving_bigquery_log_table",
        "kms_key_name",
        "network_name",
        "subnetwork_name",
        "config_yaml",
    }
    assert expected <= set(module.outputs)
    assert module.outputs["vertex_service_account"]["value"] == (
        "${google_service_account.pipelines.email}"
    )
    assert module.locals["kfp_repository_url"] == (
        "https://${var.region}-kfp.pkg.dev/${var.project_id}/"
        "${google_artifact_registry_repository.pipelines.repository_id}"
    )
    assert module.locals["request_log_table_uri"].startswith("bq://${var.project_id}.")

    # An output named <section>_<field> names a real config key, and so does config_yaml.
    sections = PipelineConfig.model_fields
    for name in module.outputs:
        section, _, key = name.partition("_")
        if section in sections:
            assert key in sections[section].annotation.model_fields, f"{name}: no {section}.{key}"
    value = module.outputs["config_yaml"]["value"]
    match = re.fullmatch(r"\$\{yamlencode\((\{.*\})\)\}", value, re.S)
    assert match, value
    config = hcl2.loads(f"config = {match.group(1)}", serialization_options=OPTIONS)["config"]
    assert set(config) <= set(sections)
    for section, keys in config.items():
        assert set(keys) <= set(sections[section].annotation.model_fields), section
    assert set(config["vertex"]) == {"project", "region", "pipeline_root", "service_account"}


def test_every_checkov_skip_says_why() -> None:
    for path in TF_FILES:
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                match = re.search(r"#checkov:skip=(CKV2?_[A-Z]+_\d+):(.+)", line)
                assert match and len(match.group(2).split()) >= 5, f"{path.name}: {line.strip()}"


def test_the_readme_documents_every_variable_and_output(module: Module) -> None:
    readme = (INFRA / "README.md").read_text()
    for name in [*module.variables, *module.outputs, *SUBSTITUTIONS]:
        assert f"`{name}`" in readme, f"infra/README.md does not mention `{name}`"
