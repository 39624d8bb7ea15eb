"""The architecture holds: imports run one way (pipelines -> components -> mlops), and the
repository needs nothing outside itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mlops.config import CONFIG_DIR, PACKAGED_SOURCES, load_config, local_path
from tests.conftest import REPO

# package -> the project packages it must never import
FORBIDDEN = {
    "mlops": {"components", "pipelines", "tests", "benchmarks"},
    "components": {"pipelines", "tests", "benchmarks"},
    "pipelines": {"tests", "benchmarks"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level package, line) for every import in the file, at any depth (function bodies
    included: KFP component bodies import inside the function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def test_imports_run_one_way_pipelines_components_mlops() -> None:
    violations = [
        f"{path.relative_to(REPO)}:{line} imports {package}"
        for layer, forbidden in FORBIDDEN.items()
        for path in sorted((REPO / layer).rglob("*.py"))
        for package, line in sorted(imported_packages(path))
        if package in forbidden
    ]
    assert not violations, "imports against the dependency direction:\n" + "\n".join(violations)


def test_the_layout_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def body():\n    from pipelines.cli import main\n    import components.ops\n"
    )
    assert imported_packages(module) == {("pipelines", 2), ("components", 3)}


def _beam_half_of_a_step(module: str) -> bool:
    """`<step>_beam`: the Beam (Dataflow) half of a step, which the step's module runs."""
    step = module.removesuffix("_beam")
    path = REPO / "components" / f"{step}.py"
    return (
        step != module
        and path.is_file()
        and f"from components.{module} import" in (path.read_text())
    )


def test_components_hold_steps_only() -> None:
    """Every module in components/ is a step that ops.py wraps (or ops.py itself, or a step's
    Beam half that the step dispatches to: ingest_beam)."""
    ops = (REPO / "components" / "ops.py").read_text()
    modules = {p.stem for p in (REPO / "components").glob("*.py")} - {"__init__", "ops"}
    steps = {m.removesuffix("_beam") if _beam_half_of_a_step(m) else m for m in modules}
    unwrapped = sorted(m for m in steps if f"from components.{m} import" not in ops)
    assert not unwrapped, f"components/ modules that no KFP op wraps: {unwrapped}"


def test_nothing_reads_outside_the_repository() -> None:
    # spelled in parts so that this file does not match itself
    outside = ("../" + "sha" + "red", '"' + 'shared"')
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("mlops", "components", "pipelines", "tests", "configs", "benchmarks")
        for path in (REPO / folder).rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".yaml", ".yml", ".json", ".pbtxt"}
        and any(marker in path.read_text(errors="ignore") for marker in outside)
    ]
    assert not offenders, f"files that reach outside the repository: {offenders}"


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_shipped_config_reads_files_inside_the_repository(name: str) -> None:
    config = load_config(CONFIG_DIR / f"{name}.yaml")
    for value in (config.data.source, config.validation.schema_path, config.serving.batch_input):
        if not value or value in PACKAGED_SOURCES or "://" in value:
            continue
        path = Path(local_path(value))
        assert path.is_file(), f"{name}.yaml names {value}, which does not exist"
        assert path.resolve().is_relative_to(REPO), f"{name}.yaml reads {value}, outside the repo"
