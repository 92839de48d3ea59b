"""A real experiment killed mid-run resumes from its stored trials: `deeplora_fewshot` at the smoke profile is killed
(SIGKILL, the whole process tree) once its first run is stored; run again, it reads that run back instead of computing
it, and its tables are those of an uninterrupted run."""

import csv
import json
import os
import shutil
import signal
import subprocess
import time

import psutil

from conftest import REPO, dlr_call, kept_of, run_dlr
from dlr_nb.pipeline.trials import MISSING, TrialStore, load_trial

NAME = "deeplora_fewshot"
TRIALS = REPO / "book" / "results" / "smoke" / "pool"  # its runs are pooled trials (dlr_nb.pipeline.pool)
TIMING = ("seconds_per_step", "eval_seconds")  # measured times, which differ from run to run


def _trial_files() -> list:
    return sorted(TRIALS.glob("*.json")) if TRIALS.is_dir() else []


def _tables(kept) -> dict:
    "The kept run's CSV tables, their timing columns left out."
    tables = {}
    for path in sorted((kept.folder / NAME).glob("*.csv")):
        with path.open(newline="") as f:
            tables[path.name] = [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]
    return tables


def _runs_record(kept) -> dict:
    "The results' record of the `runs` trials: total, resumed, computed, damaged (and that they are pooled)."
    assert kept is not None and kept.ok, kept
    record = dict(kept.results["trials"]["runs"])
    assert record.pop("pooled") is True
    return record


def _kill_tree(proc: subprocess.Popen) -> None:
    "SIGKILL to `dlr`'s process group and to every process under it (the Jupyter kernel runs in a session of its own)."
    below = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    for child in below:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(below, timeout=30)
    proc.wait(timeout=30)


def _intact(path) -> bool:
    "Whether a trial file reads back as a stored value (its id and checksum hold)."
    record = json.loads(path.read_text(encoding="utf-8"))
    return load_trial(TrialStore(TRIALS, record["code_key"]), record["id"]) is not MISSING


def test_a_killed_run_resumes_from_its_stored_trials():
    shutil.rmtree(TRIALS, ignore_errors=True)
    whole = run_dlr("run", NAME, "--profile", "smoke", "--force", root=REPO, timeout=600)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    uninterrupted = kept_of(REPO, NAME, "smoke")
    total = _runs_record(uninterrupted)["total"]
    assert total >= 2 and _runs_record(uninterrupted) == {"total": total, "resumed": 0, "computed": total, "damaged": 0}
    expected = _tables(uninterrupted)

    shutil.rmtree(TRIALS)
    cmd, env = dlr_call("run", NAME, "--profile", "smoke", "--force", root=REPO)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not _trial_files() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, f"the run ended (status {proc.returncode}) before its first trial was seen"
        assert _trial_files(), "no trial was stored within 300 s"
    finally:
        _kill_tree(proc)
    stored = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in _trial_files()}
    assert 1 <= len(stored) < total, f"{len(stored)} of {total} trials stored when killed"
    assert all(_intact(TRIALS / name) for name in stored)

    # --force: the uninterrupted run's result is kept and current, so without it the run would be a cache hit
    again = run_dlr("run", NAME, "--profile", "smoke", "--force", root=REPO, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    resumed = kept_of(REPO, NAME, "smoke")
    resumed_count = len(stored)
    assert _runs_record(resumed) == {
        "total": total,
        "resumed": resumed_count,
        "computed": total - resumed_count,
        "damaged": 0,
    }
    assert {name: (TRIALS / name).read_bytes() for name in stored} == {n: b for n, (b, _) in stored.items()}
    assert {name: (TRIALS / name).stat().st_mtime_ns for name in stored} == {n: t for n, (_, t) in stored.items()}
    assert len(_trial_files()) == total
    assert _tables(resumed) == expected
