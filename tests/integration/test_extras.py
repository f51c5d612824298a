"""README's install line works in a new project, and so does each other extra alone.

The built wheel goes into a virtualenv of its own with exactly the extras README's install line
names, into a `django-admin startproject` configured as README says: `manage.py check`
passes, daphne serves a page rendering the template tag, and a hint a view publishes reaches a
WebSocket subscribed to its channel. Each other extra, installed alone with its feature
configured, passes `check` too and builds its backend. Nothing else is installed, so a module
that imports an extra nobody asked for fails here as it would for a user.
"""

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.support.servers import ROOT, free_port, listening, recv_json, subscribe

# The install line of README's "Use it in your project", e.g. django-pushgateway[redis,daphne].
INSTALL_LINE = re.compile(r'pip install "django-pushgateway\[([\w,]+)\]"')

# What README's settings.py and urls.py say, appended to what startproject wrote.
README_SETTINGS = """
INSTALLED_APPS = ["daphne", *INSTALLED_APPS, "pushgateway", "channels_app"]
ASGI_APPLICATION = "channels_app.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
PUSHGATEWAY = {"BACKEND": "pushgateway.backends.channels.ChannelsBackend"}
"""
README_URLS = """
from django.urls import include

urlpatterns += [path("", include("channels_app.urls"))]
"""
# The user's own page (README's template tag) and a view that publishes, as their code would.
PAGE_SETTINGS = 'TEMPLATES[0]["DIRS"] = [BASE_DIR / "templates"]\n'
PAGE_TEMPLATE = "{% load pushgateway %}<!doctype html><title>Event</title>{% pushgateway_script %}"
PAGE_VIEWS = """
from django.http import HttpResponse
from django.shortcuts import render

import pushgateway


def page(request):
    pushgateway.watch(request, "comments-7")
    return render(request, "page.html")


def publish(request):
    pushgateway.publish("comments-7", {"pk": "42"})
    return HttpResponse("published")
"""
PAGE_URLS = """
from mysite import views

urlpatterns += [path("page/", views.page), path("publish/", views.publish)]
"""
# An extra alone: README's settings but daphne (served by another ASGI server), README's
# URLconf, and what the extra is for.
WITHOUT_DAPHNE = README_SETTINGS.replace('"daphne", ', "")
GRIP_URL = "http://127.0.0.1:5561?key=sig-key&verify-iss=pushpin"
OTHER_EXTRAS = ("fanout", "metrics", "postgres")


def feature(extra: str) -> tuple[str, str]:
    """The settings and URLconf lines that put `extra` to use, as its docs say."""
    from settings.test import POSTGRES_URL  # the suite's server, which check connects to

    backend = {
        "BACKEND": "pushgateway.backends.fanout.FanoutBackend",
        "OPTIONS": {"GRIP_URL": GRIP_URL},
    }
    return {
        "fanout": (f"PUSHGATEWAY = {backend!r}\n", ""),
        "metrics": (
            'PUSHGATEWAY = {"OPTIONS": {"METRICS": True}}\n',
            "import pushgateway.metrics\n\n"
            'urlpatterns += [path("metrics", pushgateway.metrics.view)]\n',
        ),
        "postgres": (
            "import dj_database_url\n\n"
            f"DATABASES = {{'default': dj_database_url.parse({POSTGRES_URL!r})}}\n",
            "",
        ),
    }[extra]


BUILD_BACKEND = (
    "import django; django.setup(); from pushgateway.backends import get_backend; "
    "print(type(get_backend()).__name__)"
)


def readme_extras() -> str:
    return INSTALL_LINE.search((ROOT / "README.md").read_text()).group(1)


def run(*args, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


class UserProject:
    """A new startproject in a virtualenv holding the wheel with `extras` and nothing else."""

    def __init__(self, root: Path, wheel: Path, extras: str, settings: str, urls: str):
        venv = root / "venv"
        uv = (sys.executable, "-m", "uv")
        assert run(*uv, "venv", "--quiet", "--python", sys.executable, venv).returncode == 0
        self.python = venv / "bin" / "python"
        installed = run(*uv, "pip", "install", "--python", self.python, f"{wheel}[{extras}]")
        assert installed.returncode == 0, installed.stderr
        self.dir = root / "project"
        self.dir.mkdir()
        started = run(venv / "bin" / "django-admin", "startproject", "mysite", self.dir)
        assert started.returncode == 0, started.stderr
        with open(self.dir / "mysite" / "settings.py", "a") as file:
            file.write(settings)
        with open(self.dir / "mysite" / "urls.py", "a") as file:
            file.write(urls)
        self.env = {
            "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "mysite.settings",
        }

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return run(self.python, "manage.py", *args, cwd=self.dir, env=self.env)

    def run_code(self, code: str) -> subprocess.CompletedProcess:
        return run(self.python, "-c", code, cwd=self.dir, env=self.env)


def test_readmes_install_line_and_settings_serve_a_page_and_a_hint(wheel, tmp_path):
    settings = README_SETTINGS + PAGE_SETTINGS
    project = UserProject(tmp_path, wheel, readme_extras(), settings, README_URLS + PAGE_URLS)
    (project.dir / "templates").mkdir()
    (project.dir / "templates" / "page.html").write_text(PAGE_TEMPLATE)
    (project.dir / "mysite" / "views.py").write_text(PAGE_VIEWS)
    check = project.manage("check")
    assert check.returncode == 0, check.stderr

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    daphne = [project.python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    log = open(tmp_path / "daphne.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [*map(str, daphne), "channels_app.asgi:application"],
        cwd=project.dir,
        env=project.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not listening(port):
            running = server.poll() is None and time.monotonic() < deadline
            assert running, (tmp_path / "daphne.log").read_text()
            time.sleep(0.1)
        with urllib.request.urlopen(f"{url}/page/", timeout=10) as response:
            page = response.read().decode()
        assert 'id="pushgateway-config"' in page and "pushgateway/pushgateway.js" in page
        with connect(f"ws://127.0.0.1:{port}/ws/pushgateway/", origin=url) as socket:
            subscribe(socket, "comments-7")
            urllib.request.urlopen(f"{url}/publish/", timeout=10).close()
            frame = recv_json(socket)
        assert frame["type"] == "message" and frame["channel"] == "comments-7"
        assert frame["data"] == {"pk": "42"}
    finally:
        server.terminate()
        server.wait(10)
        log.close()


@pytest.mark.parametrize("extra", OTHER_EXTRAS)
def test_each_other_extra_alone_passes_check_with_its_feature_configured(extra, wheel, tmp_path):
    settings, urls = feature(extra)
    project = UserProject(tmp_path, wheel, extra, WITHOUT_DAPHNE + settings, README_URLS + urls)
    check = project.manage("check", "--database", "default")
    assert check.returncode == 0, check.stderr
    built = project.run_code(BUILD_BACKEND)
    assert built.returncode == 0, built.stderr
