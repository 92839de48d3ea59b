"""The wheel builds and installs in a fresh virtual environment, where `import dlr_nb` and `dlr --help` work."""

import subprocess, sys, venv

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(REPO)],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp / "dist").glob("dlr_nb-*.whl"))
    venv.create(tmp / "venv", with_pip=True)
    py = tmp / "venv" / "bin" / "python"
    # torch pinned in the same command, so pip takes the CPU wheel on disk instead of a CUDA build
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel), "torch==2.13.0"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "venv" / "bin", wheel


def test_wheel_contents(fresh_env):
    import zipfile

    names = zipfile.ZipFile(fresh_env[1]).namelist()
    for mod in ("core", "data", "runner", "book", "cli"):
        assert f"dlr_nb/{mod}.py" in names
    assert not any(n.startswith(("nbs/", "tests/", "book/")) for n in names)


def test_import_is_light_and_cli_works(fresh_env):
    bin_ = fresh_env[0]
    code = (
        "import sys, dlr_nb, dlr_nb.core, dlr_nb.data, dlr_nb.runner, dlr_nb.book, dlr_nb.cli; "
        "heavy = [m for m in ('transformers', 'peft', 'sklearn', 'mnist1d', 'papermill') if m in sys.modules]; "
        "assert not heavy, heavy; print(dlr_nb.__version__)"
    )
    proc = subprocess.run([str(bin_ / "python"), "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0.1.0"
    help_ = subprocess.run([str(bin_ / "dlr"), "--help"], capture_output=True, text=True, cwd="/")
    assert help_.returncode == 0 and "run" in help_.stdout
    outside = subprocess.run([str(bin_ / "dlr"), "list"], capture_output=True, text=True, cwd="/")
    assert outside.returncode == 2 and "not inside a dlr-nb checkout" in outside.stderr
