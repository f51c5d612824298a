"""The wheel: what it ships and declares, and that it works in someone else's project.

They run on the primary combination (on a wheel built from this checkout) and on the wheel
combination (noxfile.py), against the wheel installed there (not editable), which
PUSHGATEWAY_WHEEL names.
"""

import ast
import email
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import channels_app
import pushgateway
from tests.support.servers import ROOT, run_python

pytestmark = pytest.mark.wheel

REPOSITORY = "https://github.com/django-pushgateway/django-pushgateway"
BROWSER_MODULE = "pushgateway/static/pushgateway/pushgateway.js"
# The classic script, its ES module entry and their TypeScript declarations.
BROWSER_FILES = ("pushgateway.js", "pushgateway.mjs", "pushgateway.d.ts", "pushgateway.d.mts")

SETTINGS = """
SECRET_KEY = "x"
INSTALLED_APPS = ["django.contrib.staticfiles", "pushgateway", "channels_app"]
STATIC_URL = "static/"
STATIC_ROOT = {static_root!r}
CHANNEL_LAYERS = {{"default": {{"BACKEND": "channels.layers.InMemoryChannelLayer"}}}}
"""


def dist_info(wheel: Path) -> str:
    [name] = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" in n}
    return name


def metadata(wheel: Path) -> email.message.Message:
    return email.message_from_bytes(zipfile.ZipFile(wheel).read(f"{dist_info(wheel)}/METADATA"))


def test_wheel_ships_the_apps_and_browser_module_but_not_the_project(wheel):
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert BROWSER_MODULE in names
    assert "pushgateway/protocol.py" in names
    assert "channels_app/consumer.py" in names
    tops = {name.split("/")[0] for name in names if not name.startswith("django_pushgateway")}
    assert tops == {"pushgateway", "channels_app"}
    for name in BROWSER_FILES:
        shipped = archive.read(f"pushgateway/static/pushgateway/{name}")
        source = ROOT / "static" / "js" / name
        if source.exists():  # the run against the installed wheel has no sources
            assert shipped == source.read_bytes()


def test_wheel_carries_the_license_it_declares(wheel):
    meta = metadata(wheel)
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta.get_all("License-File") == ["LICENSE"]
    text = zipfile.ZipFile(wheel).read(f"{dist_info(wheel)}/licenses/LICENSE").decode()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) the django-pushgateway authors" in text
    assert "Neither the name of the copyright holder" in text  # the third clause


def test_wheel_names_the_project_urls(wheel):
    urls = dict(url.split(", ", 1) for url in metadata(wheel).get_all("Project-URL"))
    assert urls == {
        "Homepage": REPOSITORY,
        "Documentation": f"{REPOSITORY}/tree/main/docs",
        "Source": REPOSITORY,
        "Issues": f"{REPOSITORY}/issues",
    }


def test_long_description_links_are_absolute_and_name_files_of_this_repository(wheel):
    """The package index shows the README; a relative link there leads nowhere."""
    meta = metadata(wheel)
    assert meta["Description-Content-Type"] == "text/markdown"
    description = meta.get_payload()
    links = re.findall(r"\]\(\s*<?([^)\s>]+)", description)  # [text](target)
    links += re.findall(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)", description, re.M)  # [ref]: target
    links += re.findall(r"""(?:href|src)\s*=\s*["']([^"']+)""", description)  # HTML
    assert f"{REPOSITORY}/blob/main/docs/development.md" in links
    relative = [link for link in links if not re.match(r"(https?|mailto):|#", link)]
    assert relative == []
    prefix = f"{REPOSITORY}/blob/main/"
    missing = [
        link
        for link in links
        if link.startswith(prefix) and not (ROOT / link.removeprefix(prefix)).is_file()
    ]
    assert missing == []


def matrix() -> tuple[dict[str, tuple[str, ...]], str]:
    """noxfile.py's DJANGO_PYTHONS (each Django series: its Pythons) and WHEEL (the wheel
    combination's name), read without importing nox (the tests' virtualenvs lack it)."""
    found = {
        node.targets[0].id: node.value
        for node in ast.parse((ROOT / "noxfile.py").read_text()).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    return ast.literal_eval(found["DJANGO_PYTHONS"]), ast.literal_eval(found["WHEEL"])


def test_classifiers_pins_and_requires_python_say_what_is_tested(wheel):
    django_pythons, wheel_combination = matrix()
    pythons = {Version(python) for series in django_pythons.values() for python in series}
    djangos = {Version(django) for django in django_pythons}
    classifiers = "\n".join(metadata(wheel).get_all("Classifier"))

    def named(framework):
        found = re.findall(rf"^{framework} :: (\d+\.\d+)$", classifiers, re.M)
        return {Version(version) for version in found}

    assert named("Framework :: Django") == djangos
    assert named("Programming Language :: Python") == pythons

    meta = metadata(wheel)
    requires_python = SpecifierSet(meta["Requires-Python"])
    oldest = min(pythons)
    assert all(str(v) in requires_python for v in pythons)
    assert f"{oldest.major}.{oldest.minor - 1}" not in requires_python

    [pin] = [
        Requirement(r).specifier
        for r in meta.get_all("Requires-Dist")
        if Requirement(r).name.lower() == "django" and Requirement(r).marker is None
    ]
    for version in djangos:
        assert f"{version}.0" in pin and f"{version}.99" in pin
    newest, oldest = max(djangos), min(djangos)
    assert f"{newest.major}.{newest.minor + 1}" not in pin  # nothing newer than tested
    assert f"{oldest.major}.{oldest.minor - 1}.99" not in pin  # nor older
    # The run against the built wheel takes the newest Django the pin admits.
    assert Version(wheel_combination.rsplit("-dj", 1)[1]) == newest


def test_the_tests_exercise_the_pushgateway_this_run_names():
    """This checkout (editable) in most runs; in the run against the wheel, the installed
    wheel's files, both here and in the server processes the tests start."""
    result = run_python(
        "import pushgateway, channels_app; print(pushgateway.__file__, channels_app.__file__)",
        redis_url=None,
    )
    assert result.returncode == 0, result.stderr
    files = [Path(pushgateway.__file__), Path(channels_app.__file__)]
    files += map(Path, result.stdout.split())
    wheel = os.environ.get("PUSHGATEWAY_WHEEL")
    if not wheel:
        assert all(file.is_relative_to(ROOT) for file in files), files
        return
    site_packages = Path(sysconfig.get_paths()["purelib"])
    assert all(file.is_relative_to(site_packages) for file in files), files
    assert not (ROOT / "pushgateway").exists() and not (ROOT / "channels_app").exists()
    archive = zipfile.ZipFile(wheel)
    for name in ("pushgateway/protocol.py", "channels_app/consumer.py", BROWSER_MODULE):
        assert (site_packages / name).read_bytes() == archive.read(name)
    direct_url = importlib.metadata.distribution("django-pushgateway").read_text("direct_url.json")
    assert not json.loads(direct_url).get("dir_info", {}).get("editable")


def test_collectstatic_in_another_project_serves_the_browser_module(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    project = tmp_path / "project"
    project.mkdir()
    static_root = tmp_path / "collected"
    (project / "other_settings.py").write_text(SETTINGS.format(static_root=str(static_root)))
    script = (
        "import django, pushgateway; django.setup();"
        "print(pushgateway.__file__);"
        "from django.core.management import call_command;"
        "call_command('collectstatic', '--noinput', verbosity=0);"
        "call_command('check')"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        env={"PYTHONPATH": f"{site}:{project}", "DJANGO_SETTINGS_MODULE": "other_settings"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(site))  # the wheel's copy, not this checkout
    collected = static_root / "pushgateway" / "pushgateway.js"
    assert collected.read_bytes() == zipfile.ZipFile(wheel).read(BROWSER_MODULE)
