"""scripts/setup.sh chooses the torch build offline: a fake venv python stands in for pip, a fake nvidia-smi
for the GPU, and the test reads which installs the script asked for."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
if [ "$1" = "-c" ]; then exit 1; fi  # `import torch` fails: torch is not installed yet
case "$*" in
    *"torch==2.13.0+cpu"*) [ "$FAKE_LOCAL_CPU_WHEEL" = 1 ] || { echo "No matching distribution" >&2; exit 1; } ;;
esac
exit 0
"""


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_setup(tmp_path: Path, gpu: bool, local_cpu_wheel: bool) -> list[str]:
    """Run a copy of setup.sh in a scratch checkout; returns the venv-python command lines it ran."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", checkout / "scripts" / "setup.sh")
    shutil.copy(REPO / "pyproject.toml", checkout / "pyproject.toml")
    (checkout / ".venv" / "bin").mkdir(parents=True)
    executable(checkout / ".venv" / "bin" / "python", FAKE_PYTHON)
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    executable(bin_folder / "nvidia-smi", f"#!/bin/sh\nexit {0 if gpu else 9}\n")
    log = tmp_path / "pip.log"
    env = {
        "PATH": f"{bin_folder}:{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "FAKE_LOCAL_CPU_WHEEL": "1" if local_cpu_wheel else "0",
        "HOME": str(tmp_path),
    }
    subprocess.run(["bash", str(checkout / "scripts" / "setup.sh")], env=env, check=True, capture_output=True, timeout=60)
    return log.read_text().splitlines()


def torch_installs(lines: list[str]) -> list[str]:
    return [line for line in lines if "pip install" in line and " torch" in line]


@pytest.mark.parametrize("local_cpu_wheel", [True, False])
def test_without_a_gpu_only_a_cpu_build_of_torch_is_asked_for(tmp_path, local_cpu_wheel):
    lines = run_setup(tmp_path, gpu=False, local_cpu_wheel=local_cpu_wheel)
    installs = torch_installs(lines)
    assert installs, lines
    for line in installs:
        assert "+cpu" in line or "--index-url https://download.pytorch.org/whl/cpu" in line, line
    assert lines[-1].endswith("pip install --disable-pip-version-check --progress-bar on -e .[test]")


def test_a_local_cpu_wheel_is_used_without_the_cpu_index(tmp_path):
    installs = torch_installs(run_setup(tmp_path, gpu=False, local_cpu_wheel=True))
    assert len(installs) == 1 and "torch==2.13.0+cpu" in installs[0]


def test_without_a_local_cpu_wheel_the_cpu_index_is_used(tmp_path):
    installs = torch_installs(run_setup(tmp_path, gpu=False, local_cpu_wheel=False))
    assert len(installs) == 2 and installs[1].endswith("torch --index-url https://download.pytorch.org/whl/cpu")


def test_with_a_gpu_torch_is_left_to_the_project_install(tmp_path):
    assert torch_installs(run_setup(tmp_path, gpu=True, local_cpu_wheel=True)) == []


def test_installs_show_progress(tmp_path):
    for line in run_setup(tmp_path, gpu=False, local_cpu_wheel=False):
        if "pip install" in line:
            assert " -q" not in line and "--progress-bar on" in line
