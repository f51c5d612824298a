"""The wheel, installed in someone else's project: apps import, collectstatic finds the module."""

import subprocess
import sys
import zipfile

import pytest

from tests.servers import ROOT

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


def test_wheel_ships_the_apps_and_browser_module_but_not_the_project(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "pushgateway/static/pushgateway/pushgateway.js" in names
    assert "pushgateway/protocol.py" in names
    assert "channels_app/consumer.py" in names
    tops = {name.split("/")[0] for name in names if not name.startswith("django_pushgateway")}
    assert tops == {"pushgateway", "channels_app"}


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
