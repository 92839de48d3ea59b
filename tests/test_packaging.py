"""The wheel builds and installs in a fresh virtual environment, where `import dlr_nb` and `dlr --help` work."""

import os, subprocess, sys, venv

import pytest

from conftest import REPO


# The fresh-venv tests install torch into a new environment (about 100 s of `make test`, a fifth of its budget): they
# run where DLR_WHEEL_TESTS=1 or DLR_SLOW_TESTS=1 — in the release workflow before every upload, and on demand.
WHEEL = os.environ.get("DLR_WHEEL_TESTS") == "1" or os.environ.get("DLR_SLOW_TESTS") == "1"


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    if not WHEEL:
        pytest.skip("a fresh-venv install (about 100 s): set DLR_WHEEL_TESTS=1 (the release workflow does)")
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
    for mod in ("core", "data", "models", "pipeline/runner", "pipeline/book", "pipeline/cli", "dmf/factorization"):
        assert f"dlr_nb/{mod}.py" in names
    for part in ("pipeline", "dmf", "deeplora", "convresnext", "pruning", "collapse"):
        assert f"dlr_nb/{part}/__init__.py" in names
    assert not any(n.startswith(("nbs/", "tests/", "book/")) for n in names)


def test_import_is_light_and_cli_works(fresh_env):
    bin_ = fresh_env[0]
    code = (
        "import sys, dlr_nb, dlr_nb.core, dlr_nb.data; "
        "import dlr_nb.pipeline.runner, dlr_nb.pipeline.book, dlr_nb.pipeline.cli; "
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


def _make_targets():
    import re

    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w.-]*):", text, re.M))


def test_workflows_are_valid_and_call_make_targets_that_exist():
    "The book and release workflows parse as YAML, and every `make X` they run is a target of the Makefile."
    import re

    import yaml

    targets = _make_targets()
    assert {"book", "test", "publish", "dist"} <= targets
    flows = {p.stem: yaml.safe_load(p.read_text()) for p in (REPO / ".github" / "workflows").glob("*.yml")}
    assert {"book", "release"} <= set(flows)
    for name, flow in flows.items():
        assert flow.get("on", flow.get(True)), f"{name}: no trigger"
        for job_name, job in flow["jobs"].items():
            for step in job["steps"]:
                for target in re.findall(r"\bmake\s+([\w.-]+)", step.get("run", "")):
                    assert target in targets, f"{name}/{job_name} runs `make {target}`, which the Makefile lacks"
                for script in re.findall(r"(?:^|\s)(\.ci/\S+)", step.get("run", "")):
                    assert (REPO / script).is_file(), f"{name}/{job_name} runs the missing {script}"
    uses = lambda flow: [s.get("uses", "") for job in flow["jobs"].values() for s in job["steps"]]
    book_runs = " ".join(s.get("run", "") for s in flows["book"]["jobs"]["build"]["steps"])
    assert "dlr book --frozen" in book_runs, "the online book builds from the committed results and reruns nothing"
    assert any(u.startswith("actions/deploy-pages") for u in uses(flows["book"]))
    assert any(u.startswith("pypa/gh-action-pypi-publish") for u in uses(flows["release"]))
    assert flows["release"]["jobs"]["publish"]["permissions"]["id-token"] == "write", "trusted publishing needs it"
    assert flows["release"].get("on", flows["release"].get(True))["push"]["tags"] == ["v*"]


def test_make_publish_dry_run_prints_the_ghp_import_command():
    "`dlr publish --dry-run` (what `make publish PUBLISH_FLAGS=--dry-run` ends with) needs only a built book."
    from dlr_nb.pipeline.book import publish_book

    if not (REPO / "book" / "_build" / "html" / "index.html").is_file():
        pytest.skip("the book is not built")
    cmd = publish_book(REPO, dry_run=True)
    assert cmd[-1] == str(REPO / "book" / "_build" / "html") and "--no-jekyll" in cmd


# Modules that are an extra's integration: importing them needs that extra (module: (extra, the package it needs))
EXTRA_MODULES = {"deeplora.peft": ("lora", "peft")}
# One function per extra, called in the base environment: (module, call, the extra, the package that is missing)
EXTRA_CALLS = [
    ("data", "make_mnist1d()", "data", "mnist1d"),
    ("data", "load_digits_data()", "data", "sklearn"),
    ("convresnext.network", "sklearn_baselines()", "data", "sklearn"),
    ("deeplora.finetune", "load_encoder('all-MiniLM-L6-v2', num_labels=1)", "lora", "transformers"),
]
_PROBE = """
import importlib, json, sys
out = {"modules": {}, "calls": []}
for m in sys.argv[1].split(","):
    try:
        importlib.import_module("dlr_nb." + m)
        out["modules"][m] = None
    except Exception as e:
        out["modules"][m] = [type(e).__name__, str(e), getattr(e, "name", None)]
for m, call in json.loads(sys.argv[2]):
    try:
        eval(call, vars(importlib.import_module("dlr_nb." + m)))
        out["calls"].append(None)
    except Exception as e:
        out["calls"].append([type(e).__name__, str(e), getattr(e, "name", None)])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def base_probe(fresh_env):
    "Import every module of the wheel and call one function of each extra, in the venv with base requirements."
    import json, zipfile

    bin_, wheel = fresh_env
    modules = sorted(
        n.removeprefix("dlr_nb/").removesuffix(".py").replace("/", ".")
        for n in zipfile.ZipFile(wheel).namelist()
        if n.startswith("dlr_nb/") and n.endswith(".py") and not n.endswith("__init__.py")
    )
    calls = json.dumps([(m, c) for m, c, _, _ in EXTRA_CALLS])
    proc = subprocess.run(
        [str(bin_ / "python"), "-c", _PROBE, ",".join(modules), calls], capture_output=True, text=True, cwd="/"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_module_imports_with_base_requirements(base_probe):
    "Only an extra's own integration module may need that extra to import; it then misses exactly that package."
    for module, error in base_probe["modules"].items():
        if module in EXTRA_MODULES:
            extra, package = EXTRA_MODULES[module]
            assert error is None or (error[0] == "ModuleNotFoundError" and error[2].split(".")[0] == package), (
                module,
                error,
            )
        else:
            assert error is None, f"dlr_nb.{module} does not import with the base requirements: {error}"
    assert len(base_probe["modules"]) >= 20


def test_a_function_of_a_missing_extra_fails_on_the_missing_package(base_probe):
    for (module, call, extra, package), error in zip(EXTRA_CALLS, base_probe["calls"]):
        assert error is not None, f"{module}.{call} ran without the {extra} extra"
        assert error[0] in ("ModuleNotFoundError", "ImportError") and package in error[1], (call, error)


def test_a_missing_extra_names_the_pip_command(base_probe):
    "A function of a missing extra fails in one line that names the pip command (dlr_nb.core.needs_extra)."
    for (module, call, extra, package), error in zip(EXTRA_CALLS, base_probe["calls"]):
        assert f'pip install "dlr-nb[{extra}]"' in error[1] and "\n" not in error[1], (call, error)


SLOW = os.environ.get("DLR_SLOW_TESTS") == "1"


@pytest.mark.skipif(not SLOW, reason="minutes of training: set DLR_SLOW_TESTS=1 to run the README's snippets")
@pytest.mark.parametrize("index", range(4))
def test_readme_snippets_run_verbatim(index, tmp_path):
    "Each Python snippet of the README runs as written (in this environment, which has every extra)."
    import re

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 4, "the README's snippets changed: update the parametrization"
    proc = subprocess.run(
        [sys.executable, "-c", blocks[index]], capture_output=True, text=True, cwd=tmp_path, timeout=1800
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
