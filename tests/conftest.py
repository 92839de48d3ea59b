"""Shared fixtures: the repository, the `dlr` command and throw-away projects built from fixture templates."""

import os, shutil, subprocess, sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "experiments"
DLR = Path(sys.executable).parent / "dlr"


def dlr_call(*args, root=None, env_extra=None) -> tuple[list[str], dict]:
    "The command line and environment of the installed `dlr` command, as the tests run it."
    cmd = [str(DLR), *(["--root", str(root)] if root else []), *map(str, args)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env_extra or {})}
    env.pop("DLR_ROOT", None)
    env.pop("DLR_RESULTS_DIR", None)
    return cmd, env


def run_dlr(*args, root=None, timeout=300, env_extra=None, **kw):
    "Run the installed `dlr` command; returns the CompletedProcess (text, captured)."
    cmd, env = dlr_call(*args, root=root, env_extra=env_extra)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


@pytest.fixture
def project(tmp_path):
    "A minimal project: settings.ini, book/experiments with the fixture templates named by `use`."

    def make(*names):
        (tmp_path / "settings.ini").write_text("[DEFAULT]\nlib_name = dlr_nb\n")
        exp = tmp_path / "book" / "experiments"
        exp.mkdir(parents=True, exist_ok=True)
        for n in names:
            shutil.copy(FIXTURES / f"{n}.ipynb", exp / f"{n}.ipynb")
        return tmp_path

    return make


def kept_of(root, name, profile=None):
    "The kept result (`store.Kept`) of `name` in project `root`: at `profile`, else the one a reader is shown."
    from dlr_nb.pipeline.store import read_kept, shown_results

    results = Path(root) / "book" / "results"
    return read_kept(results, profile, name) if profile else shown_results(results).get(name)


def results_of(root, name, profile=None):
    "The results JSON of experiment `name` in project `root` (as `kept_of` finds it), or None."
    kept = kept_of(root, name, profile)
    return kept.results if kept is not None and kept.ok else None


def summary_rows(proc):
    "The summary table's rows of a `dlr run` as {name: (status, cached)}."
    rows = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[1] in ("ok", "failed", "cached", "timeout"):
            rows[parts[0]] = (parts[1], parts[3])
    return rows
