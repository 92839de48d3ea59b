"""The runner end to end: cache, --force, failures, parallel jobs, interruption, overrides."""

import os, signal, subprocess, time

from conftest import DLR, kept_of, results_of, run_dlr, summary_rows as _summary


def test_cache_hit_miss_and_force(project):
    root = project("quick")
    first = run_dlr("run", "quick", "--profile", "smoke", root=root)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _summary(first) == {"quick": ("ok", "no")}
    assert results_of(root, "quick")["parameters"]["n"] == 2
    assert (kept_of(root, "quick").folder / "quick" / "values.csv").is_file()
    again = run_dlr("run", "quick", "--profile", "smoke", root=root)
    assert _summary(again) == {"quick": ("cached", "yes")}
    changed = run_dlr("run", "quick", "--profile", "smoke", "-p", "n=5", root=root)
    assert _summary(changed) == {"quick": ("ok", "no")} and results_of(root, "quick")["parameters"]["n"] == 5
    forced = run_dlr("run", "quick", "--profile", "smoke", "-p", "n=5", "--force", root=root)
    assert _summary(forced) == {"quick": ("ok", "no")}
    other_profile = run_dlr("run", "quick", "--profile", "cpu", root=root)
    assert _summary(other_profile) == {"quick": ("ok", "no")} and results_of(root, "quick")["profile"] == "cpu"
    assert results_of(root, "quick", "smoke")["parameters"]["n"] == 5  # a cpu run keeps the smoke result apart
    tpl = root / "book" / "experiments" / "quick.ipynb"
    tpl.write_text(tpl.read_text().replace("n·scale is positive", "n times scale is positive"))
    edited = run_dlr("run", "quick", "--profile", "cpu", root=root)
    assert _summary(edited) == {"quick": ("ok", "no")}  # a changed template is a cache miss


def test_overrides_reach_the_notebook(project):
    root = project("quick")
    proc = run_dlr("run", "quick", "-p", "scale=2.5", "-p", "flag=true", "-p", "label=hello world", root=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    p = results_of(root, "quick")["parameters"]
    assert (p["scale"], p["flag"], p["label"], p["n"]) == (2.5, True, "hello world", 3)


def test_failing_experiment_does_not_stop_the_others(project):
    root = project("quick", "failing", "quick2")
    proc = run_dlr("run", "--profile", "smoke", root=root)
    assert proc.returncode == 1
    s = _summary(proc)
    assert s == {"failing": ("failed", "no"), "quick": ("ok", "no"), "quick2": ("ok", "no")}
    assert "deliberate failure of the fixture" in proc.stdout
    assert results_of(root, "quick") and results_of(root, "quick2") and results_of(root, "failing") is None
    assert (root / "book" / ".dlr" / "failed" / "failing.ipynb").is_file()
    assert not list((root / "book" / "results").glob("*/failing"))


def test_parallel_jobs(project):
    root = project("quick", "quick2")
    proc = run_dlr("run", "--jobs", "2", "--profile", "smoke", root=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _summary(proc) == {"quick": ("ok", "no"), "quick2": ("ok", "no")}
    for n in ("quick", "quick2"):
        assert results_of(root, n)["experiment"] == n


def test_sigkill_leaves_no_partial_results(project):
    root = project("slow")
    env = {k: v for k, v in os.environ.items() if k not in ("DLR_ROOT", "DLR_RESULTS_DIR")}
    proc = subprocess.Popen(
        [str(DLR), "--root", str(root), "run", "slow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        while not list((root / "book" / ".dlr" / "staging").glob("slow-*/started.flag")):
            assert time.time() < deadline and proc.poll() is None, "the slow experiment never started"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned kernel too
        except ProcessLookupError:
            pass
    results = root / "book" / "results"
    assert not results.exists() or not [p for p in results.rglob("*")], list(results.rglob("*"))
    done = run_dlr("run", "slow", "-p", "seconds=0.1", root=root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert results_of(root, "slow")["parameters"]["seconds"] == 0.1
    assert not list((root / "book" / ".dlr" / "staging").glob("*")), "stale staging was not cleaned"
