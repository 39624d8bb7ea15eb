"""Compiled pipeline templates in an Artifact Registry KFP repository: check the image a spec is
compiled against, upload a spec with tags, and promote an uploaded version with more tags.

The registry is `https://REGION-kfp.pkg.dev/PROJECT/REPOSITORY`; a package is a pipeline's name
(`<config name>-<pipeline>`), a version its content digest (`sha256:...`), and a tag a movable
name for a version (`latest`, `sha-<commit>`, `v1.2.0`, `release`)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlops.config import ConfigError

# registry host[:port]/path/name, then either :tag or @sha256:<64 hex>
IMAGE_PATTERN = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))$"
)
HOST_PATTERN = re.compile(r"^https://[a-z0-9-]+-kfp\.pkg\.dev/[^/]+/[^/]+$")
# Artifact Registry tag ids: [a-zA-Z0-9-._~:@], never the version prefix.
TAG_PATTERN = re.compile(r"^[A-Za-z0-9._~:@-]{1,128}$")
VERSION_PREFIX = "sha256:"


def check_image(image: str) -> str:
    """`image` if it is `registry/path/name:tag` or `registry/path/name@sha256:<64 hex>`."""
    if not IMAGE_PATTERN.match(image):
        raise ConfigError(
            f"--image must be REGISTRY/PATH/NAME:TAG or REGISTRY/PATH/NAME@sha256:<64 hex>, "
            f"got {image!r}"
        )
    return image


def check_host(host: str) -> str:
    host = host.rstrip("/")
    if not HOST_PATTERN.match(host):
        raise ConfigError(
            f"--host must be https://REGION-kfp.pkg.dev/PROJECT/REPOSITORY, got {host!r}"
        )
    return host


def check_tags(tags: list[str]) -> list[str]:
    for tag in tags:
        if not TAG_PATTERN.match(tag) or tag.startswith(VERSION_PREFIX):
            raise ConfigError(
                f"tag {tag!r} is not an Artifact Registry tag ([A-Za-z0-9._~:@-], "
                f"not starting with {VERSION_PREFIX})"
            )
    return tags


def package_name(template: str | Path) -> str:
    """The package a compiled spec uploads as: its `pipelineInfo.name`."""
    try:
        spec = json.loads(Path(template).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{template} is not a compiled pipeline spec: {exc}") from exc
    spec = spec.get("pipelineSpec", spec)
    name = spec.get("pipelineInfo", {}).get("name")
    if not name:
        raise ConfigError(f"{template} has no pipelineInfo.name")
    return name


@dataclass(frozen=True)
class Published:
    """One template version in the registry, and the URI a PipelineJob or a schedule runs."""

    package: str
    version: str
    tags: tuple[str, ...]
    template_uri: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tags": list(self.tags)}


def _client(host: str, auth: Any = None) -> Any:
    from kfp.registry import RegistryClient

    return RegistryClient(host=check_host(host), auth=auth)


def upload(
    host: str,
    template: str | Path,
    tags: list[str],
    auth: Any = None,
    extra_headers: dict[str, str] | None = None,
) -> Published:
    """Upload a compiled spec with `tags`; Artifact Registry answers `<package>/<version>`.
    `auth` defaults to the application default credentials."""
    host = check_host(host)
    expected = package_name(template)
    client = _client(host, auth)
    package, version = client.upload_pipeline(
        file_name=str(template), tags=check_tags(list(tags)), extra_headers=extra_headers
    )
    if package != expected:
        raise ConfigError(f"registry stored {template} as {package!r}, expected {expected!r}")
    return Published(package, version, tuple(tags), f"{host}/{package}/{version}")


def resolve_version(client: Any, package: str, ref: str) -> str:
    """`ref` as a version: a `sha256:` version as is, a tag through the registry."""
    if ref.startswith(VERSION_PREFIX):
        return ref
    tag = client.get_tag(package_name=package, tag=ref)
    version = tag.get("version", "")
    if not version:
        raise ConfigError(f"tag {ref!r} of {package!r} points at no version: {tag}")
    return version.rsplit("/", 1)[-1]


def promote(host: str, package: str, ref: str, tags: list[str], auth: Any = None) -> Published:
    """Point `tags` at the version `ref` names (a `sha256:` version or a tag): a new tag is
    created, an existing one moved."""
    host = check_host(host)
    client = _client(host, auth)
    version = resolve_version(client, package, ref)
    for tag in check_tags(list(tags)):
        if _tag_exists(client, package, tag):
            client.update_tag(package_name=package, version=version, tag=tag)
        else:
            client.create_tag(package_name=package, version=version, tag=tag)
    return Published(package, version, tuple(tags), f"{host}/{package}/{version}")


def _tag_exists(client: Any, package: str, tag: str) -> bool:
    import requests

    try:
        client.get_tag(package_name=package, tag=tag)
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return False
        raise
    return True
