"""Trials on a Dask distributed cluster (a `LocalCluster` of two worker processes on the loopback interface): the same
tables as the local run, and a worker killed mid-run loses no finished trial."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import kept_of, run_dlr, summary_rows

distributed = pytest.importorskip(
    "distributed", reason='the cluster extra is not installed (pip install "dlr-nb[cluster]")'
)
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cluster"


@pytest.fixture
def cluster(monkeypatch):
    "Two worker processes on 127.0.0.1 that can import the fixture's trial function."
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(FIXTURES))  # the scheduler, in this process, unpickles the task graph too
    c = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, silence_logs=50
    )
    try:
        yield c
    finally:
        c.close()


def _table(root):
    kept = kept_of(root, "trialed", "smoke")
    return (kept.folder / "trialed" / "squares.csv").read_text(), kept.results


def test_a_run_through_the_cluster_writes_the_tables_of_the_local_run(project, cluster):
    root = project("trialed")
    env = {"PYTHONPATH": str(FIXTURES)}
    local = run_dlr("run", "trialed", "--profile", "smoke", root=root, env_extra=env)
    assert summary_rows(local) == {"trialed": ("ok", "no")}, local.stdout + local.stderr
    table, _ = _table(root)
    for trial in (root / "book" / "results" / "smoke" / "trialed" / "trials").glob("*.json"):
        trial.unlink()  # the cluster must compute every trial again
    address = cluster.scheduler_address.removeprefix("tcp://")
    remote = run_dlr(
        "run", "trialed", "--profile", "smoke", "--force", "--executor", f"dask://{address}", root=root, env_extra=env
    )
    assert summary_rows(remote) == {"trialed": ("ok", "no")}, remote.stdout + remote.stderr
    again, res = _table(root)
    assert again == table
    assert res["trials"]["squares"]["computed"] == 6


def test_a_worker_killed_mid_run_loses_no_finished_trial(cluster, tmp_path):
    from slow_square import slow_square

    from dlr_nb.pipeline.trials import TrialStore, run_trials

    store = TrialStore(tmp_path / "trials", "code")
    items = list(range(12))
    address = "dask://" + cluster.scheduler_address.removeprefix("tcp://")
    out = {}
    runner = threading.Thread(
        target=lambda: out.update(
            zip(("values", "record"), run_trials(slow_square, items, store, {}, executor=address))
        )
    )
    runner.start()
    deadline = time.time() + 60
    while len(list(store.folder.glob("*.json"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    finished = {p.name: p.read_bytes() for p in store.folder.glob("*.json")}
    assert len(finished) >= 2, "no trial finished on the cluster"
    with distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
    os.kill(pids[0], signal.SIGKILL)  # one worker dies mid-run; the nanny starts another
    runner.join(120)
    assert not runner.is_alive(), "the run did not finish after a worker was lost"
    assert [v["square"] for v in out["values"]] == [x * x for x in items]
    for name, data in finished.items():  # every trial finished before the kill is still there, unchanged
        assert (store.folder / name).read_bytes() == data
    again, record = run_trials(slow_square, items, store, {}, executor=address)
    assert record["resumed"] == 12 and again == out["values"]
