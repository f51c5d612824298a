"""The wheel: what it ships and declares, and that it works in someone else's project."""

import email
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.servers import ROOT

REPOSITORY = "https://github.com/django-pushgateway/django-pushgateway"

SETTINGS = """
SECRET_KEY = "x"
INSTALLED_APPS = ["django.contrib.staticfiles", "pushgateway", "channels_app"]
STATIC_URL = "static/"
STATIC_ROOT = {static_root!r}
CHANNEL_LAYERS = {{"default": {{"BACKEND": "channels.layers.InMemoryChannelLayer"}}}}
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [path] = out.glob("django_pushgateway-*.whl")
    return path


def dist_info(wheel: Path) -> str:
    [name] = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" in n}
    return name


def metadata(wheel: Path) -> email.message.Message:
    return email.message_from_bytes(zipfile.ZipFile(wheel).read(f"{dist_info(wheel)}/METADATA"))


def test_wheel_ships_the_apps_and_browser_module_but_not_the_project(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "pushgateway/static/pushgateway/pushgateway.js" in names
    assert "pushgateway/protocol.py" in names
    assert "channels_app/consumer.py" in names
    tops = {name.split("/")[0] for name in names if not name.startswith("django_pushgateway")}
    assert tops == {"pushgateway", "channels_app"}


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
    assert collected.read_text() == (ROOT / "static" / "js" / "pushgateway.js").read_text()
