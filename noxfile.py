"""The Python x Django matrix the tests run on, and what each combination runs.

`./dev test` hands over to nox: ruff, the JavaScript tests, then pytest on each combination in
a virtualenv of its own (made by uv under .nox/, reused between runs), then one line per
combination and a total. The primary combination runs every test once; the others run what
depends on the Python or Django version (marker `matrix`), the wheel combination against the
wheel built from this checkout. docs/development.md says why and what each phase costs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent

# Each supported Django series and the Pythons it runs on (Django 6 needs Python 3.12+):
# py{3.12,3.13}-dj{6.0,6.1} and py{3.11,3.12,3.13}-dj5.2. pyproject.toml's classifiers,
# Django pin and requires-python name exactly these (tests/integration/test_packaging.py).
DJANGO_PYTHONS = {
    "6.1": ("3.13", "3.12"),
    "6.0": ("3.13", "3.12"),
    "5.2": ("3.13", "3.12", "3.11"),
}
PRIMARY = "py3.13-dj6.1"  # every test; `./dev` makes .venv on its Python
WHEEL = "py3.12-dj6.1"  # the built wheel installed, not this checkout
COMBINATIONS = [(p, d) for d, pythons in DJANGO_PYTHONS.items() for p in pythons]
# What each combination runs, as a pytest marker expression (None: every test).
SELECTION = {PRIMARY: None, WHEEL: "matrix or wheel"}
EVERYWHERE_ELSE = "matrix"
# The primary's bytecode compiled at install, on every core, not on first import inside a
# timed test; the other combinations, without timed tests, compile only what they import
# (about 7 s less per virtualenv made).
COMPILED = ("--compile-bytecode",)

nox.needs_version = ">=2025.10.16"
nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.download_python = "never"  # a Python this machine lacks: "not run", not fetched
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["lint", "js", "tests", "summary"]


def name_of(python: str, django: str) -> str:
    return f"py{python}-dj{django}"


def interpreter(version: str) -> str | None:
    """Python `version`'s interpreter as `./dev python` finds it: on PATH, under pyenv, or
    Debian's package (installed); None when this machine cannot have it."""
    found = subprocess.run([ROOT / "dev", "python", version], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


INTERPRETERS = {p: interpreter(p) for p in sorted({p for p, _ in COMBINATIONS})}


@dataclass
class Result:
    """What one step of this run did, for the summary."""

    line: str
    passed: int = 0
    failed: int = 0
    ok: bool = False


# By step, in the order they ran: the sessions of one run share this nox process (no --parallel:
# running two combinations at once measured barely faster on 2 cores; docs/development.md).
RESULTS: dict[str, Result] = {}


def timed(started: float) -> str:
    seconds = round(time.monotonic() - started)
    return f"{seconds // 60}:{seconds % 60:02d}"


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    started, RESULTS["ruff"] = time.monotonic(), Result("ruff: FAILED")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    RESULTS["ruff"] = Result(f"ruff: passed in {timed(started)}", ok=True)


@nox.session(python=False)
def js(session: nox.Session) -> None:
    """The browser module's tests under node's own test runner."""
    started, RESULTS["node"] = time.monotonic(), Result("node --test: FAILED")
    session.run("node", "--test", "tests/js/")
    RESULTS["node"] = Result(f"node --test: passed in {timed(started)}", ok=True)


# A combination whose Python this machine lacks gets no virtualenv (python=False) and is
# skipped, so nox does not go looking for an interpreter of its own.
@nox.session
@nox.parametrize(
    ("python", "version", "django", "name"),
    [(INTERPRETERS[p] or False, p, d, name_of(p, d)) for p, d in COMBINATIONS],
    ids=[name_of(p, d) for p, d in COMBINATIONS],
)
def tests(session: nox.Session, version: str, django: str, name: str) -> None:
    """pytest on one combination; `-- ARGS` are pytest's (a -m replaces the combination's)."""
    if INTERPRETERS[version] is None:
        session.skip(f"no Python {version} on this machine")
    started = time.monotonic()
    RESULTS[name] = Result(f"{name}  FAILED before pytest ran (see above)")
    if problem := postgres_problem_after_start():
        session.error(f"The tests need PostgreSQL and cannot use it:\n  {problem}")
    project, env, what = ROOT, {}, "this checkout"
    if name == WHEEL:
        wheel = build_wheel(session)
        # --exact: the virtualenv holds the wheel and what it declares, and nothing else.
        exact = ("--exact", "--reinstall-package", "django-pushgateway")
        session.install(*exact, f"{wheel}[test]", f"Django=={django}.*")
        env = {"PUSHGATEWAY_WHEEL": str(wheel)}  # the tests check what they import is it
        project, what = copy_project_without_apps(), "the built wheel"
    else:
        # The primary also gets the benchmarks' servers, which some tests serve under.
        if name == PRIMARY:
            install_editable(session, django, "test,bench", COMPILED)
        else:
            install_editable(session, django, "test")
    selection = SELECTION.get(name, EVERYWHERE_ELSE)
    args = ["-m", selection] if selection else []
    junit = ROOT / ".nox" / "results" / f"{name}.xml"
    junit.unlink(missing_ok=True)
    versions = session.run(
        "python",
        "-c",
        "import sys, django; print(sys.version.split()[0], django.get_version())",
        silent=True,
    ).split()
    what = f"Python {versions[0]}, Django {versions[1]}, {what}, {selection or 'every test'}"
    try:
        with session.chdir(project):
            session.run("pytest", f"--junitxml={junit}", *args, *session.posargs, env=env)
    finally:
        RESULTS[name] = counted(name, what, junit, started)


def counted(name: str, what: str, junit: Path, started: float) -> Result:
    """The result of a combination from pytest's JUnit XML report."""
    if not junit.exists():
        return Result(f"{name}  {what}: FAILED, pytest wrote no report")
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    failed = int(suite.get("failures")) + int(suite.get("errors"))
    skipped = int(suite.get("skipped"))
    passed = int(suite.get("tests")) - failed - skipped
    verdict = "passed" if failed == 0 else "FAILED"
    counts = f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
    line = f"{name}  {what}: {verdict}: {counts} in {timed(started)}"
    return Result(line, passed, failed, ok=failed == 0)


def install_editable(session: nox.Session, django: str, extras: str, options: tuple = ()) -> None:
    """This checkout (editable) with `extras` and Django `django` (uv `options`); again only when
    pyproject.toml changed (uv resolves anew each time it is asked, seconds per run)."""
    stamp = Path(session.virtualenv.location) / "installed-from"
    wanted = hashlib.sha1((ROOT / "pyproject.toml").read_bytes()).hexdigest() + f" {django}"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    session.install(*options, "-e", f"{ROOT}[{extras}]", f"Django=={django}.*")
    stamp.write_text(wanted)


def build_wheel(session: nox.Session) -> Path:
    out = ROOT / ".nox" / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    session.run("uv", "build", "--quiet", "--wheel", "--out-dir", str(out), str(ROOT))
    [wheel] = out.glob("django_pushgateway-*.whl")
    return wheel


def copy_project_without_apps() -> Path:
    """The project around the apps (settings, demo, bench, tests, docs) without the apps and
    the browser module, so every import of them, in pytest and in the servers it starts,
    finds the installed wheel."""
    copy = ROOT / ".nox" / "project-without-apps"
    shutil.rmtree(copy, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "node_modules")
    for name in ("settings", "demo", "bench", "tests", "docs"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    for name in ("manage.py", "pyproject.toml", "noxfile.py", "README.md", "LICENSE", "dev"):
        shutil.copy2(ROOT / name, copy / name)
    return copy


POSTGRES_PROBLEM = """
import psycopg
from settings.test import DATABASES, POSTGRES_URL
try:
    psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
except psycopg.Error as exc:
    print(DATABASES["postgres"]["PORT"], f"{POSTGRES_URL}: {exc}".strip())
"""


def postgres_problem() -> tuple[str, str] | None:
    """(port, why) when the suite cannot use its PostgreSQL server (settings/test.py)."""
    check = subprocess.run(
        [sys.executable, "-c", POSTGRES_PROBLEM], cwd=ROOT, capture_output=True, text=True
    )
    if check.returncode != 0:
        return "", check.stderr.strip().splitlines()[-1]
    return tuple(check.stdout.split(" ", 1)) if check.stdout.strip() else None


@functools.cache  # once per run
def postgres_problem_after_start() -> str | None:
    """The tests create and drop databases of their own on a running PostgreSQL: start the
    local cluster on its port when it is stopped (`./dev setup` installs PostgreSQL). Why
    it still cannot be used, or None."""
    if (problem := postgres_problem()) is None:
        return None
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    for version, cluster, port, status, *_ in map(str.split, clusters.splitlines()):
        if port == problem[0] and status != "online":
            print(f"starting PostgreSQL {version}/{cluster} (port {port})", flush=True)
            start = ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "start"]
            subprocess.run([*sudo, *start])
    if (problem := postgres_problem()) is None:
        return None
    return (
        f"{problem[1]}\nThey connect to TEST_POSTGRES_URL (default: user postgres without a "
        "password on 127.0.0.1:5432) and create and drop databases of their own there."
    )


@nox.session(python=False)
def summary(session: nox.Session) -> None:
    """One line per step of this run and per combination, and the total."""
    for result in RESULTS.values():
        print(f"  {result.line}")
    for python, django in COMBINATIONS:
        if INTERPRETERS[python] is None:
            print(f"  {describe(python, django)}")
    passed = sum(result.passed for result in RESULTS.values())
    failed = sum(result.failed for result in RESULTS.values())
    broken = [name for name, result in RESULTS.items() if not result.ok]
    verdict = f"FAILED: {', '.join(broken)}" if broken else "everything passed"
    print(f"total: {passed} tests passed, {failed} failed over {len(RESULTS)} steps; {verdict}")


def describe(python: str, django: str) -> str:
    """What a combination is and runs, as `./dev matrix` lists it."""
    name = name_of(python, django)
    if INTERPRETERS[python] is None:
        return f"{name}  not run: no Python {python} on this machine"
    selection = SELECTION.get(name, EVERYWHERE_ELSE)
    what = "the built wheel" if name == WHEEL else "this checkout"
    tests = f"-m {selection!r}" if selection else "every test"
    return f"{name}  {INTERPRETERS[python]}, Django {django}.x, {what}: {tests}"


if __name__ == "__main__":
    print("\n".join(describe(python, django) for python, django in COMBINATIONS))
