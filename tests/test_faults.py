"""Faults: a kill at every step of publishing, the time limit, corrupt results, unwritable folders, and bad
parameters of the real templates (declared constraints, checked before any kernel starts)."""

import functools
import math
import signal
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import REPO, dlr_call, kept_of, run_dlr, summary_rows
from dlr_nb.pipeline.parameters import BUILTIN, UsageError
from dlr_nb.pipeline.runner import discover, plan, resolved_parameters
from dlr_nb.pipeline.store import PUBLISH_STEPS, is_cached, key_parts, remove_orphans

EXPERIMENTS = discover(REPO / "book" / "experiments")


def _parts(exps, seed):
    params = plan(exps, ["quick"], "smoke", [f"seed={seed}"])["quick"]
    return key_parts(exps["quick"].path, resolved_parameters(exps["quick"], params))


def _seen(root):
    "What a reader is shown of `quick`: its seed, or 'damaged', or None."
    kept = kept_of(root, "quick", "smoke")
    return None if kept is None else (kept.results["parameters"]["seed"] if kept.ok else "damaged")


def test_a_kill_at_every_step_of_publishing_leaves_the_whole_old_result_or_the_whole_new_one(project):
    root = project("quick")
    results = root / "book" / "results"
    first = run_dlr("run", "quick", "--profile", "smoke", "-p", "seed=1", root=root)
    assert first.returncode == 0, first.stdout + first.stderr
    exps = discover(root / "book" / "experiments")
    for i, step in enumerate(PUBLISH_STEPS):
        old_seed, new_seed = i + 1, i + 2
        crashed = run_dlr(
            "run", "quick", "--profile", "smoke", "-p", f"seed={new_seed}", root=root, env_extra={"DLR_CRASH_AT": step}
        )
        assert crashed.returncode != 0, f"the injected kill at {step!r} did not happen"
        complete = step != "moved"  # from the manifest on, the new run is the result
        assert _seen(root) == (new_seed if complete else old_seed), step  # never a mix, never damaged
        assert is_cached(results, "smoke", "quick", _parts(exps, new_seed)) == complete, step
        assert is_cached(results, "smoke", "quick", _parts(exps, old_seed)) == (not complete), (
            step
        )  # the old stays whole
        for reader in (("ledger",), ("status",)):
            shown = run_dlr(*reader, root=root)
            assert shown.returncode == 0 and "damaged (" not in shown.stdout + shown.stderr, (
                step,
                reader,
                shown.stderr,
            )
            assert " 0 damaged" in shown.stdout or reader == ("ledger",), shown.stdout
        rerun = run_dlr("run", "quick", "--profile", "smoke", "-p", f"seed={new_seed}", root=root)
        assert summary_rows(rerun) == {"quick": ("cached", "yes") if complete else ("ok", "no")}, step
        assert _seen(root) == new_seed
        named = kept_of(root, "quick", "smoke").folder
        orphans = sorted(p for p in (results / "smoke" / "quick").glob("run-*") if p != named)
        assert sorted(remove_orphans(results, "smoke", "quick", min_age=-1)) == orphans
        assert list((results / "smoke" / "quick").glob("run-*")) == [named]


@pytest.mark.parametrize("step", PUBLISH_STEPS)
def test_a_folder_that_cannot_be_written_keeps_the_old_result_whole(project, step):
    "As root a read-only folder is still writable, so the hook DLR_FAIL_AT raises the OSError a read-only folder would."
    root = project("quick")
    assert run_dlr("run", "quick", "--profile", "smoke", "-p", "seed=1", root=root).returncode == 0
    failed = run_dlr("run", "quick", "--profile", "smoke", "-p", "seed=2", root=root, env_extra={"DLR_FAIL_AT": step})
    assert _seen(root) in (1, 2), (step, failed.stdout, failed.stderr)  # the whole old or the whole new, never damaged
    if step == "moved":
        assert failed.returncode == 1 and _seen(root) == 1 and "Traceback" not in failed.stdout + failed.stderr


def test_time_limit_stops_the_kernel_and_keeps_nothing(project):
    root = project("slow")
    start = time.time()
    proc = run_dlr("run", "slow", "--timeout", "4", "-p", "seconds=120", root=root, timeout=120)
    assert time.time() - start < 60, "the time limit did not stop the kernel"
    assert proc.returncode == 1
    assert summary_rows(proc) == {"slow": ("timeout", "no")}
    assert (
        "TIMEOUT slow: stopped after 4 s, the limit at the cpu profile; lower seconds=120.0 or set --timeout"
        in proc.stdout
    )
    results = root / "book" / "results"
    assert not results.exists() or not [p for p in results.rglob("*") if p.is_file()]


def test_ctrl_c_stops_the_run_at_once_and_keeps_nothing(project):
    root = project("slow")
    cmd, env = dlr_call("run", "slow", "--timeout", "600", "-p", "seconds=120", root=root)
    # a process started in the background inherits an ignored SIGINT, and Python then never raises KeyboardInterrupt
    default_sigint = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint
    )
    deadline = time.time() + 120
    while not list(root.rglob("started.flag")) and time.time() < deadline:  # the kernel is sleeping
        time.sleep(0.5)
    assert list(root.rglob("started.flag")), "the slow template never started"
    proc.send_signal(signal.SIGINT)
    try:  # the 600 s time limit's timer must not keep the process alive
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("dlr was still running 60 s after Ctrl-C") from None
    assert proc.returncode == 130 and "interrupted; no partial results were kept" in err
    results = root / "book" / "results"
    assert not results.exists() or not [p for p in results.rglob("*") if p.is_file()]
    assert "Traceback" not in err and "ZMQError" not in err, err


def test_sigterm_stops_the_run_like_ctrl_c(project):
    root = project("slow")
    cmd, env = dlr_call("run", "slow", "--timeout", "600", "-p", "seconds=120", root=root)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not list(root.rglob("started.flag")) and time.time() < deadline:
        time.sleep(0.5)
    assert list(root.rglob("started.flag")), "the slow template never started"
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("dlr was still running 60 s after SIGTERM") from None
    assert proc.returncode == 143 and err.strip().splitlines() == [
        "dlr: terminated; no partial results were kept (finished trials stay stored)"
    ], err
    results = root / "book" / "results"
    assert not results.exists() or not [p for p in results.rglob("*") if p.is_file()]


def test_bad_timeout_is_a_usage_error(project):
    root = project("quick")
    proc = run_dlr("run", "quick", "--timeout", "-1", root=root)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--timeout" in proc.stderr


def test_a_damaged_result_is_named_never_shown_and_fails_the_ledger(project):
    root = project("quick", "quick2")
    assert run_dlr("run", "--profile", "smoke", root=root).returncode == 0
    kept = kept_of(root, "quick2")
    table = kept.folder / "quick2" / "values.csv"
    table.write_text(table.read_text() + "9,9\n")  # edited by hand after publishing
    proc = run_dlr("ledger", root=root)
    assert proc.returncode == 1
    assert "quick.positive" in proc.stdout and "quick2." not in proc.stdout  # the rest is shown, the damaged not
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlr: skipped quick2 at the smoke profile: damaged"), proc.stderr
    assert "changed since published: quick2/values.csv" in lines[0] and "Traceback" not in proc.stderr
    status = run_dlr("status", root=root)
    assert "quick2  " in status.stdout and "damaged" in status.stdout and "1 damaged" in status.stdout
    rerun = run_dlr("run", "--stale", "--profile", "smoke", root=root)
    assert summary_rows(rerun) == {"quick2": ("ok", "no")}, rerun.stdout + rerun.stderr
    assert run_dlr("ledger", root=root).returncode == 0


def test_an_unusable_work_folder_is_one_line(project):
    root = project("quick")
    (root / "book" / ".dlr").write_text("not a folder")  # as root, a read-only folder would still be writable
    proc = run_dlr("run", "quick", "--profile", "smoke", root=root)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and ".dlr" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("environment", "-p", "seed=-1"),
        ("environment", "-p", "repeat=999999999"),
        ("dmf_invariant_subspaces", "-p", "d=-5"),
        ("environment", "-p", "sizes=100000"),
        ("dmf_invariant_subspaces", "-p", "scale=inf"),
        ("environment", "--device", "cpu\n"),
        ("environment", "-p", "seed=" + "9" * 400),
        ("environment", "-p", "seed=1", "-p", "seed=2"),
        ("environment", "-p", "repeat=\uff12"),
        ("environment", "-p", "sizes=" + "1" * 10_000),
        ("environment", "--executor", "dask://nohost"),
    ],
)
def test_bad_values_of_real_templates_exit_2_before_any_kernel(args):
    result = REPO / "book" / "results" / "smoke" / args[0] / "manifest.json"
    before = result.read_bytes() if result.exists() else None
    proc = run_dlr("run", args[0], "--profile", "smoke", *args[1:], root=REPO)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ": running" not in proc.stdout + proc.stderr  # no kernel was started
    assert (result.read_bytes() if result.exists() else None) == before  # and no result written
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and len(proc.stderr) < 400
    assert args[-1].split("=")[0].strip() in proc.stderr or "device" in proc.stderr or "executor" in proc.stderr


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_parameter_declares_its_allowed_values(name):
    exp = EXPERIMENTS[name]
    undeclared = [
        p.name for p in exp.parameters.values() if p.name not in BUILTIN and p.type is not bool and p.allowed is None
    ]
    assert not undeclared, f"{name}: parameters without '; allowed: ...' in their comment: {undeclared}"
    assert exp.profiles is not None, f"{name}: no profile table found in an ExperimentRun.start call"


_VALUES = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "none", "None", "0", "-1", "1e309", "nan", "2x8", "a,b", "1,,2", "cpu\n", "x" * 300]),
    st.text(max_size=20),
    st.lists(st.integers(min_value=-5, max_value=10**6), min_size=1, max_size=70).map(lambda v: ",".join(map(str, v))),
)
_PAIRS = [(n, p) for n, e in sorted(EXPERIMENTS.items()) for p in e.parameters if p not in BUILTIN]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=st.sampled_from(_PAIRS), value=_VALUES, profile=st.sampled_from(["smoke", "cpu", "paper"]))
def test_random_values_are_accepted_and_allowed_or_rejected_in_one_line(pair, value, profile):
    name, key = pair
    param = EXPERIMENTS[name].parameters[key]
    try:
        params = plan(EXPERIMENTS, [name], profile, [f"{key}={value}"])[name]
    except UsageError as e:
        message = str(e)
        assert "\n" not in message and key in message, message
        return
    got = params[key]
    assert got is None or isinstance(got, param.type)
    if isinstance(got, float):
        assert math.isfinite(got)
    if got is not None and param.allowed is not None:
        param.check(got)  # accepted means allowed
    if param.type is str and got is not None:
        assert param.allowed is not None, f"{name}.{key} accepted an unconstrained string {got!r}"


def _library_cases():
    "Bad calls of the library: (label, call, exception type, words the one-line message must contain)."
    import torch
    from safetensors.torch import save_file
    from torch import nn

    from dlr_nb.collapse.metrics import class_separation, collapse_metrics
    from dlr_nb.lowrank import numerical_rank
    from dlr_nb.pruning.mlpnet import load_mlpnet
    from dlr_nb.pruning.prune import prune

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16, bias=False), nn.ReLU(), nn.Linear(16, 3, bias=False))
    x, y = torch.randn(40, 8), torch.arange(40) % 3
    x_nan = x.clone()
    x_nan[3, 2] = float("nan")
    H = torch.randn(12, 4)
    yc = torch.arange(12) % 3

    def checkpoint(tmp, tensors):
        path = tmp / "bad.safetensors"
        save_file(tensors, str(path))
        return path

    shapes = {"fc1.weight": (40, 784), "fc2.weight": (20, 40), "fc3.weight": (10, 20)}
    return [
        ("prune NaN inputs", lambda t: prune(net, 0.5, "cbs", (x_nan, y)), ValueError, ["data", "finite"]),
        ("prune float labels", lambda t: prune(net, 0.5, "cbs", (x, y.float())), TypeError, ["labels", "integer"]),
        ("prune labels >= C", lambda t: prune(net, 0.5, "wf", (x, y + 3)), ValueError, ["labels", "0..2"]),
        ("collapse negative labels", lambda t: collapse_metrics(H, yc - 1), ValueError, ["labels", "from -1"]),
        ("collapse no samples", lambda t: collapse_metrics(H[:0], yc[:0]), ValueError, ["features", "no samples"]),
        ("collapse W width", lambda t: collapse_metrics(H, yc, W=torch.randn(3, 5)), ValueError, ["W", "3 × 4"]),
        ("collapse fractional labels", lambda t: collapse_metrics(H, yc + 0.5), TypeError, ["labels", "integer"]),
        ("numerical_rank empty", lambda t: numerical_rank(torch.zeros(0, 3), rtol=1e-3), ValueError, ["W", "empty"]),
        ("numerical_rank NaN", lambda t: numerical_rank(torch.eye(2) / 0, atol=1e-3), ValueError, ["W", "finite"]),
        ("class_separation constant", lambda t: class_separation(torch.ones(12, 4), yc), ValueError, ["coincide"]),
        (
            "MLPNet all-NaN checkpoint",
            lambda t: load_mlpnet(checkpoint(t, {k: torch.full(s, float("nan")) for k, s in shapes.items()})),
            ValueError,
            ["bad.safetensors", "NaN"],
        ),
        (
            "MLPNet int8 checkpoint",
            lambda t: load_mlpnet(checkpoint(t, {k: torch.zeros(s, dtype=torch.int8) for k, s in shapes.items()})),
            ValueError,
            ["bad.safetensors", "int8"],
        ),
    ]


@pytest.mark.parametrize("case", _library_cases(), ids=lambda c: c[0])
def test_bad_library_calls_fail_in_one_line_naming_the_argument(case, tmp_path):
    _, call, kind, words = case
    with pytest.raises(kind) as info:
        call(tmp_path)
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
