"""Who may import whom, read from the source (every import statement, also those inside functions).

Production code (``attnkit/`` and ``attnkit_lmp/``, except the test helpers in ``attnkit/testing``) never
imports ``attnkit.testing``; the toy world may use the evaluation package, never the other way round;
and the evaluation package, a library, never imports a command-line module (``*_command``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_under(package: str) -> dict[str, Path]:
    folder = ROOT.joinpath(*package.split("."))
    return {module_name(path): path for path in sorted(folder.rglob("*.py"))}


def imported_names(name: str, path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (``from x import y`` counts as ``x`` and ``x.y``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def imports_of(names: set[str], target: str) -> list[str]:
    return sorted(name for name in names if name == target or name.startswith(target + "."))


def offenders(modules: dict[str, Path], target: str) -> dict[str, list[str]]:
    found = {name: imports_of(imported_names(name, path), target) for name, path in modules.items()}
    return {name: hits for name, hits in found.items() if hits}


PRODUCTION = {
    name: path
    for package in ("attnkit", "attnkit_lmp")
    for name, path in modules_under(package).items()
    if not (name == "attnkit.testing" or name.startswith("attnkit.testing."))
}


def test_the_scan_resolves_absolute_relative_and_function_level_imports(tmp_path):
    package = tmp_path / "attnkit_lmp" / "eval"
    package.mkdir(parents=True)
    path = package / "example.py"
    path.write_text("import attnkit.testing\nfrom ..toy import world\n\ndef later():\n    from .sweep import run\n")
    names = imported_names("attnkit_lmp.eval.example", path)
    assert {"attnkit.testing", "attnkit_lmp.toy", "attnkit_lmp.toy.world", "attnkit_lmp.eval.sweep"} <= names


def test_production_code_never_imports_the_test_helpers():
    assert len(PRODUCTION) > 50  # the scan found the packages
    assert offenders(PRODUCTION, "attnkit.testing") == {}


@pytest.mark.parametrize(
    "importer, imported",
    [("attnkit_lmp.eval", "attnkit_lmp.toy"), ("attnkit", "attnkit_lmp")],
    ids=["evaluation-never-imports-the-toy-world", "the-core-never-imports-lmp"],
)
def test_a_lower_package_never_imports_a_higher_one(importer, imported):
    modules = modules_under(importer)
    assert modules
    assert offenders(modules, imported) == {}


def test_the_evaluation_package_never_imports_a_command_line_module():
    modules = modules_under("attnkit_lmp.eval")
    commands = {
        name: [hit for hit in imported_names(name, path) if hit.rpartition(".")[2].endswith("_command")]
        for name, path in modules.items()
    }
    assert {name: hits for name, hits in commands.items() if hits} == {}
