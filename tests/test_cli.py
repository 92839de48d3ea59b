"""Bad command lines end in one line on stderr and exit status 2, before any kernel starts."""

import pytest
from conftest import run_dlr


def _one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and lines[0].startswith("dlr: error:")
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "nosuch"], ["unknown experiment 'nosuch'", "allowed: quick"]),
        (["run", "quick", "--profile", "laptop"], ["unknown profile 'laptop'", "smoke, cpu, paper"]),
        (["run", "quick", "-p", "steps=3"], ["unknown parameter 'steps' for quick", "allowed:", "scale"]),
        (["run", "quick", "-p", "n=three"], ["parameter n of quick must be int; got 'three'"]),
        (["run", "quick", "-p", "scale=fast"], ["parameter scale of quick must be float"]),
        (["run", "quick", "-p", "flag=maybe"], ["parameter flag of quick must be bool"]),
        (["run", "quick", "-p", "n"], ["malformed -p 'n'", "key=value"]),
        (["run", "quick", "-p", "=3"], ["malformed -p '=3'"]),
        (["run", "quick", "--device", "tpu"], ["unknown device 'tpu'"]),
        (["run", "quick", "--jobs", "0"], ["--jobs must be a positive integer"]),
        (["run", "quick", "--jobs", "two"], ["argument --jobs"]),
        (["run", "quick", "--threads", "0"], ["--threads must be a positive integer"]),
        (["book", "--threads", "-2"], ["--threads must be a positive integer"]),
        (["run", "quick", "-p", "profile=smoke"], ["set profile with --profile"]),
        (["frobnicate"], ["invalid choice"]),
        (["fetch", "imagenet"], ["invalid choice: 'imagenet'", "mnist"]),
        (["fetch", "mnist", "stsb", "--dest", "x"], ["--dest takes one data set at a time"]),
    ],
)
def test_bad_input_exits_2_with_one_line(project, args, words):
    root = project("quick")
    proc = run_dlr(*args, root=root)
    _one_line_error(proc, *words)
    assert not (root / "book" / ".dlr").exists() and not (root / "book" / "results").exists()  # no kernel ran


def test_a_root_without_experiments_is_a_usage_error(tmp_path):
    proc = run_dlr("list", root=tmp_path)
    _one_line_error(proc, "no experiments folder")


def test_list_shows_descriptions_and_expected_times(project):
    proc = run_dlr("list", root=project("quick", "failing"))
    assert proc.returncode == 0
    assert "a quick experiment for the runner tests" in proc.stdout and "failing" in proc.stdout
    assert proc.stdout.splitlines()[0].split()[-6:] == ["smoke", "(limit)", "cpu", "(limit)", "paper", "(limit)"]


def test_help_lists_commands():
    proc = run_dlr("--help")
    assert proc.returncode == 0 and all(c in proc.stdout for c in ("list", "run", "book", "ledger"))


def test_publish_pushes_the_built_book_to_a_bare_repository(project, tmp_path):
    "`dlr publish` commits book/_build/html to gh-pages of a local bare remote; --dry-run changes nothing."
    import subprocess

    root = project()

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout

    missing = run_dlr("publish", "--dry-run", root=root)
    assert missing.returncode == 1 and "run `dlr book` first" in missing.stderr
    site = root / "book" / "_build" / "html"
    site.mkdir(parents=True)
    (site / "index.html").write_text("<p>the book</p>")
    bare = tmp_path / "site.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    git("init", "-q")
    git("remote", "add", "origin", str(bare))
    ident = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    dry = run_dlr("publish", "--dry-run", root=root, env_extra=ident)
    assert dry.returncode == 0 and "--branch gh-pages" in dry.stdout and "--push" in dry.stdout
    assert subprocess.run(["git", "--git-dir", str(bare), "branch"], capture_output=True, text=True).stdout == ""
    done = run_dlr("publish", root=root, env_extra=ident)
    assert done.returncode == 0, done.stderr
    assert "published" in done.stdout and "origin gh-pages" in done.stdout
    tree = subprocess.run(
        ["git", "--git-dir", str(bare), "ls-tree", "--name-only", "gh-pages"], capture_output=True, text=True
    )
    assert sorted(tree.stdout.split()) == [".nojekyll", "index.html"]
