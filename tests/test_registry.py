"""The local model registry: versions, aliases, concurrent registrations."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mlops.registry import CHAMPION, LocalModelRegistry, RegistryError
from tests.conftest import fake_model


def test_versions_count_up_and_aliases_move(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "registry")
    first = registry.register("m", fake_model(tmp_path, "a"), {"blessed": True}, aliases=[CHAMPION])
    second = registry.register("m", fake_model(tmp_path, "b"), {"blessed": False})
    assert (first.version, second.version) == (1, 2)
    assert registry.get("m", alias=CHAMPION).version == 1  # not moved by an unblessed version
    registry.set_alias("m", CHAMPION, 2)
    champion = registry.get("m", alias=CHAMPION)
    assert champion.version == 2
    assert (champion.model_dir / "saved_model.pb").read_text() == "b"
    assert registry.versions("m") == [1, 2]


def test_unknown_alias_and_version_say_what_exists(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    registry.register("m", fake_model(tmp_path, "a"), {})
    with pytest.raises(RegistryError, match=r"no alias 'champion' \(aliases: none\)"):
        registry.get("m", alias=CHAMPION)
    with pytest.raises(RegistryError, match=r"no version 7 \(versions: \[1\]\)"):
        registry.get("m", version=7)
    assert registry.find("m", CHAMPION) is None


def test_concurrent_registrations_get_distinct_versions(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "registry")
    source = fake_model(tmp_path, "a")
    threads = [
        threading.Thread(target=registry.register, args=("m", source, {"i": i})) for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.versions("m") == [1, 2, 3, 4, 5, 6]
    assert sorted(registry.get("m", version=v).metadata["i"] for v in range(1, 7)) == list(range(6))


def test_concurrent_registrations_of_one_model_once_give_one_version(tmp_path: Path) -> None:
    """Two runs that reuse one cached model register it once: the check is under the lock."""
    registry = LocalModelRegistry(tmp_path / "registry")
    source = fake_model(tmp_path, "a")
    results = []

    def register(i: int) -> None:
        results.append(registry.register("m", source, {"i": i}, once=True))

    threads = [threading.Thread(target=register, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.versions("m") == [1]
    assert (
        sorted(r.metadata.get("already_registered", False) for r in results) == [False] + [True] * 5
    )
    assert {r.version for r in results} == {1}
    other = registry.register("m", fake_model(tmp_path, "b"), {}, once=True)
    assert other.version == 2 and "already_registered" not in other.metadata
