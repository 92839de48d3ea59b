"""The trial store under faults: SIGKILLs at random moments, two runs of one experiment at once, and trial files that
were truncated or edited by hand. Uses the `trialed` fixture: six trials of a slow function, stored as they finish."""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

from conftest import dlr_call, kept_of, run_dlr, summary_rows

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cluster"
ENV = {"PYTHONPATH": str(FIXTURES)}


def _trials(root):
    return sorted((root / "book" / "results" / "smoke" / "trialed" / "trials").glob("*.json"))


def _table(root):
    kept = kept_of(root, "trialed", "smoke")
    return (kept.folder / "trialed" / "squares.csv").read_text(), kept.results["trials"]["squares"]


def _start(root):
    cmd, env = dlr_call("run", "trialed", "--profile", "smoke", root=root, env_extra=ENV)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # dlr and its kernel, at once
    except ProcessLookupError:
        pass
    proc.wait(30)


def test_twenty_kills_at_random_moments_then_a_resume_give_the_tables_of_an_uninterrupted_run(project, tmp_path):
    reference = project("trialed")
    clean = run_dlr("run", "trialed", "--profile", "smoke", root=reference, env_extra=ENV)
    assert summary_rows(clean) == {"trialed": ("ok", "no")}, clean.stdout + clean.stderr
    expected, _ = _table(reference)
    root = tmp_path / "killed"
    for d in ("book/experiments",):
        (root / d).mkdir(parents=True)
    (root / "settings.ini").write_text("[DEFAULT]\nlib_name = dlr_nb\n")
    (root / "book" / "experiments" / "trialed.ipynb").write_bytes(
        (reference / "book/experiments/trialed.ipynb").read_bytes()
    )
    rng = random.Random(0)
    for _ in range(20):
        proc = _start(root)
        time.sleep(rng.uniform(0.5, 7.0))
        _kill(proc)
        for path in _trials(root):  # whatever was kept is whole: never half a trial
            record = json.loads(path.read_text())
            assert set(record) >= {"id", "value", "checksum"}, path
    done = run_dlr("run", "trialed", "--profile", "smoke", root=root, env_extra=ENV)
    assert summary_rows(done)["trialed"][0] in ("ok", "cached"), done.stdout + done.stderr
    table, record = _table(root)
    assert table == expected
    assert record["damaged"] == 0 and len(_trials(root)) == 6


def test_two_runs_at_once_keep_every_trial_once(project):
    root = project("trialed")
    first, second = _start(root), _start(root)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    table, record = _table(root)
    assert len(_trials(root)) == 6 and record["damaged"] == 0
    assert [int(line.split(",")[1]) for line in table.splitlines()[1:]] == [x * x for x in range(6)]
    for path in _trials(root):
        json.loads(path.read_text())  # no file was written twice at once into a mix


def test_a_truncated_or_edited_trial_is_found_by_its_checksum_and_run_again(project):
    root = project("trialed")
    assert run_dlr("run", "trialed", "--profile", "smoke", root=root, env_extra=ENV).returncode == 0
    expected, _ = _table(root)
    truncated, edited = _trials(root)[:2]
    truncated.write_text(truncated.read_text()[:40])
    edited.write_text(edited.read_text().replace('"square": ', '"square": 1'))
    again = run_dlr("run", "trialed", "--profile", "smoke", "--force", root=root, env_extra=ENV)
    assert summary_rows(again) == {"trialed": ("ok", "no")}, again.stdout + again.stderr
    table, record = _table(root)
    assert table == expected
    assert (record["damaged"], record["computed"], record["resumed"]) == (2, 2, 4)
