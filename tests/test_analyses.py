"""The analyses of `book/theory/analyses.yml` against the committed results: every claim of a cpu or paper result
that does not hold is explained at its current verdict, every analysis explains a claim the book shows as it is now,
and an analysis quotes measured values only through substitutions that exist."""

import re

import jinja2

from conftest import REPO
from dlr_nb.pipeline.book import format_value, load_results
from dlr_nb.pipeline.pages import book_substitutions, verdict_of
from dlr_nb.pipeline.summaries import DECIDING, analysis_of, load_analyses

RESULTS = REPO / "book" / "results"
ANALYSES = load_analyses(REPO / "book" / "theory" / "analyses.yml")


def _decided():
    "The shown results at a profile that decides anything (cpu, paper)."
    good, problems = load_results(RESULTS)
    assert not problems, problems
    return [r for r in good if r["profile"] in DECIDING]


def test_every_claim_that_does_not_hold_has_an_analysis_of_its_verdict():
    pending = [
        f"{r['experiment']}: {c['id']} ({verdict_of(c)} at {r['profile']})"
        for r in _decided()
        for c in r["claims"]
        if verdict_of(c) != "holds" and analysis_of(c, r, ANALYSES) is None
    ]
    assert not pending, "write (or update) their analyses in book/theory/analyses.yml: " + "; ".join(pending)


def test_every_analysis_explains_a_claim_as_the_book_shows_it():
    shown = {c["id"]: (r["experiment"], r["profile"], verdict_of(c)) for r in _decided() for c in r["claims"]}
    stale = {
        cid: shown.get(cid, "not shown")
        for cid, e in ANALYSES.items()
        if shown.get(cid) != (e["experiment"], e["profile"], e["verdict"])
    }
    assert not stale, f"analyses written for another result (now: experiment, profile, verdict): {stale}"


def test_analyses_quote_only_substitutions_that_exist_and_type_no_measurement():
    subs = book_substitutions(RESULTS)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    claims = {c["id"]: c for r in _decided() for c in r["claims"]}
    for cid, entry in ANALYSES.items():
        text = entry["analysis"]
        env.from_string(text).render(**subs)  # an undefined name raises UndefinedError
        measured = claims.get(cid, {}).get("measured")
        if isinstance(measured, (int, float)) and measured == measured:
            typed = format_value(measured)
            bare = re.sub(r"\{\{.*?\}\}", "", text)
            assert len(typed) < 3 or typed not in bare, f"{cid}: its measurement {typed} is typed, not substituted"
