"""Every standalone script runs by path from any folder, as the authors' users call them
(the bash scripts' tests run the main ones as modules, `python -m ...`)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import REPO

SKIP = {".venv", ".venv-ci", "tests", "checkpoints", ".git"}


def scripts() -> list[str]:
    """Every first-party file with a __main__ block, relative to the repository root."""
    found = []
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO)
        if rel.parts[0] in SKIP or rel.parts[0].startswith("."):
            continue
        if 'if __name__ == "__main__":' in path.read_text():
            found.append(rel.as_posix())
    return found


def run(cmd: list[str], cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_scripts_are_found():
    found = scripts()
    for expected in (
        "training/train_mq.py",
        "training/test_mq.py",
        "training/train_semisup.py",
        "training/train_weak_models.py",
        "data/weak_model_corruption.py",
        "prepare_datasets/prepare_PH2.py",
        "benchmarks/vqm_throughput.py",
    ):
        assert expected in found


@pytest.mark.slow
def test_every_script_runs_by_path_from_another_folder(tmp_path):
    jobs = [([sys.executable, str(REPO / rel), "--help"], tmp_path) for rel in scripts()]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: run(*job), jobs))
    failed = [
        f"{' '.join(cmd[1:])}: {res.stderr.strip().splitlines()[-1:]}"
        for (cmd, _), res in zip(jobs, results)
        if res.returncode != 0 or "usage" not in res.stdout.lower()
    ]
    assert not failed, "\n".join(failed)
