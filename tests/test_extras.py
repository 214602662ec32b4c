"""The core installs and imports without the optional extras (viz, lmp, eval); each extra names what it adds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the check is the same on every version

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRA_ONLY = ["plotly", "cv2", "av", "imageio", "accelerate", "transformers", "tokenizers", "yaml", "tqdm"]

# Runs a snippet with the extras' top-level modules made unimportable, as on a core-only install.
BLOCKED_RUN = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Blocker())
exec(sys.argv[2])
"""


def run_without_extras(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, ",".join(EXTRA_ONLY), code],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=REPO,
    )


def requirement_names(requirements: list[str]) -> set[str]:
    return {requirement.split(">")[0].split("=")[0].split("[")[0].strip().lower() for requirement in requirements}


def test_core_dependencies_leave_out_the_heavy_optional_packages():
    core = requirement_names(PYPROJECT["project"]["dependencies"])
    assert not core & {"plotly", "opencv-python-headless", "av", "accelerate", "transformers", "imageio"}
    assert {"torch", "diffusers", "pluggy"} <= core


def test_extras_cover_what_their_packages_import():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"plotly"} <= requirement_names(extras["viz"])
    assert {"transformers", "av", "attnkit"} <= requirement_names(extras["lmp"])
    assert {"opencv-python-headless"} <= requirement_names(extras["eval"])
    assert "attnkit[all]" in extras["test"] and extras["all"] == ["attnkit[viz,lmp,eval]"]


def test_the_core_attaches_and_lists_plugins_without_the_extras():
    result = run_without_extras(
        "import attnkit, attnkit.record, attnkit.record.file\n"
        "from attnkit.cli import main\n"
        "sys.exit(main(['plugins']))"
    )
    assert result.returncode == 0, result.stderr
    assert "attnkit.adapters.cogvideox" in result.stdout and "attnkit.record" in result.stdout


def test_viz_without_plotly_names_the_extra():
    result = run_without_extras("import attnkit.viz")
    assert result.returncode != 0 and "pip install 'attnkit[viz]'" in result.stderr
