"""Every results JSON in book/results matches the schema, and every `holds` follows from its measurement."""

import json

import jsonschema
import nbformat
import pytest

from conftest import REPO
from dlr_nb.pipeline.experiment import evaluate_criterion, RESULTS_SCHEMA, validate_results
from dlr_nb.pipeline.runner import discover
from dlr_nb.pipeline.store import kept_results, read_kept

KEPT = [k for by in kept_results(REPO / "book" / "results").values() for k in by.values()]
RESULTS = [k.folder / f"{k.name}.json" for k in KEPT if k.ok]
EXPERIMENTS = discover(REPO / "book" / "experiments")


@pytest.mark.skipif(not RESULTS, reason="no results yet: `make test` runs every experiment at the smoke profile first")
def test_every_experiment_has_results():
    "make test runs every experiment before pytest; a missing result means the pipeline skipped one."
    missing = [n for n in EXPERIMENTS if read_kept(REPO / "book" / "results", "smoke", n) is None]
    assert not missing, f"no results for {missing}: run `dlr run --profile smoke` first"


def test_every_kept_result_is_whole():
    "Committed or made here, every kept result matches its manifest."
    damaged = [f"{k.profile}/{k.name}: {k.problem}" for k in KEPT if not k.ok]
    assert not damaged, damaged


def test_no_smoke_result_is_committed_and_committed_results_stay_small():
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files", "book/results"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    assert not [f for f in tracked if f.startswith("book/results/smoke/")], "smoke results must never be committed"
    assert all(f.split("/")[2] in ("cpu", "paper") for f in tracked), [
        f for f in tracked if f.split("/")[2] not in ("cpu", "paper")
    ]
    size = sum((REPO / f).stat().st_size for f in tracked if (REPO / f).is_file())
    assert size < 20 * 2**20, f"committed results take {size / 2**20:.1f} MB (at most 20 MB)"


def test_the_install_pins_the_libraries_the_committed_results_were_measured_with():
    "A library's version is part of a result's key: `make install` must install the versions the kept results record."
    lines = (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    for manifest in sorted((REPO / "book" / "results").glob("[cp]*/*/manifest.json")):
        libraries = json.loads(manifest.read_text(encoding="utf-8"))["parts"]["libraries"]
        for library, version in libraries.items():
            assert pins.get(library) == version, f"{manifest.parent.name}: {library} {version} ≠ {pins.get(library)}"


@pytest.mark.parametrize("path", RESULTS, ids=[f"{p.parents[2].name}-{p.stem}" for p in RESULTS])
def test_results_match_schema_and_holds_is_computed(path):
    res = json.loads(path.read_text())
    jsonschema.validate(res, RESULTS_SCHEMA)
    assert res["experiment"] == path.stem
    validate_results(res)  # recomputes every verdict (three-valued for a claim with an interval) and `holds`
    for c in res["claims"]:
        if c["verdict"] == "not measured":  # a missing or degenerate measurement holds nothing, whatever it reads
            assert not c["holds"] and c.get("not_measured"), c["id"]
        elif "interval" not in c:
            assert c["holds"] == evaluate_criterion(c["criterion"], c["measured"]), c["id"]
    nb = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)


@pytest.mark.parametrize("path", RESULTS, ids=[f"{p.parents[2].name}-{p.stem}" for p in RESULTS])
def test_tampered_holds_is_rejected(path):
    res = json.loads(path.read_text())
    if not res["claims"]:
        pytest.skip("no claims")
    res["claims"][0]["holds"] = not res["claims"][0]["holds"]
    with pytest.raises(ValueError, match="does not follow from"):
        validate_results(res)


def test_templates_are_clean_and_follow_the_contract():
    for name, exp in EXPERIMENTS.items():
        nb = nbformat.read(exp.path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: template carries outputs"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), (
            f"{name}: needs a title first"
        )
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first_code.metadata.get("tags", []), (
            f"{name}: first code cell must be the parameters cell"
        )
        assert exp.parameters["profile"].default == "cpu" and exp.parameters["device"].default == "auto"
        assert all(p.help for p in exp.parameters.values()), f"{name}: every parameter needs a trailing comment"
        assert set(exp.expected) == {"smoke", "cpu", "paper"}, f"{name}: dlr.expected needs all three profiles"
        import papermill

        assert set(papermill.inspect_notebook(str(exp.path))) == set(exp.parameters), (
            f"{name}: papermill cannot parse every parameter line"
        )


def test_the_readme_states_the_times_the_kept_results_measured():
    "The README's time table is generated (`dlr times --readme`, run by `make book`), never typed."
    from dlr_nb.pipeline.book import times_markdown
    from dlr_nb.pipeline.runner import Project

    text = (REPO / "README.md").read_text()
    block = text.split("<!-- dlr times -->\n", 1)[1].split("\n<!-- /dlr times -->", 1)[0]
    assert block == times_markdown(Project(REPO)), "README.md's time table is stale: run `.venv/bin/dlr times --readme`"


def test_a_result_depends_on_the_modules_its_template_imports_and_on_no_other():
    "A comment in the CLI module stales nothing; a line of the pruning module stales exactly the pruning experiments."
    from dlr_nb.pipeline.store import code_cells, module_closure

    closures = {n: module_closure([s for _, s in code_cells(e.path)]) for n, e in EXPERIMENTS.items()}
    assert not [n for n, c in closures.items() if "dlr_nb.pipeline.cli" in c]
    pruned = sorted(n for n, c in closures.items() if "dlr_nb.pruning.prune" in c)
    assert pruned == sorted(n for n in EXPERIMENTS if n.startswith("pruning_")), pruned
    assert all("dlr_nb.pipeline.experiment" in c for c in closures.values())  # every template records through it
