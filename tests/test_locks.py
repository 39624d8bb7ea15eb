"""The laptop/CI lock and the GPU image's lock pin the same versions, and pin everything."""

from __future__ import annotations

import re

from tests.conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)==([^\s;]+)")


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            match = PIN.match(line)
            assert match, f"{name}: not an exact pin: {line!r}"
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_gpu_lock_agrees_with_the_cpu_lock() -> None:
    cpu, gpu = _pins("requirements.lock"), _pins("requirements-gpu.lock")
    assert {"tensorflow", "kfp", "apache-beam", "tensorflow-transform"} <= set(cpu)
    differing = {
        name: (cpu[name], gpu[name]) for name in set(cpu) & set(gpu) if cpu[name] != gpu[name]
    }
    assert differing == {}
    assert any(name.startswith("nvidia-") for name in set(gpu) - set(cpu))


def test_pyproject_pins_match_the_lock() -> None:
    import tomllib

    cpu = _pins("requirements.lock")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in project:
        if "==" in requirement:
            name, version = requirement.split("==")
            assert cpu[name.split("[")[0].lower()] == version, requirement
