"""Every code block of README.md and docs/*.md runs here, so a doc cannot drift from the code.

The convention, by the language a block's fence names (every fence names one):

- python: one or more files, each opened by a comment line naming it (`# settings.py`,
  `# urls.py`, `# models.py`, `# views.py`, `# tests.py`, ...); lines before the first such
  comment are a snippet. A reader copies a part whole, so each has its own imports, and
  every global its functions and lambdas read must exist once it has run.
  - settings.py is appended to the settings of a new `startproject`, after the settings
    parts before it in the same doc (a doc may change a setting later); urls.py likewise to
    its urls.py. Django's system checks then find nothing, warnings included.
  - models.py is a module of the demo app in an app registry of its own: its models pass
    Django's model checks; what it registers with pushgateway is unregistered afterwards.
  - every other part is a module of a package whose `models` holds the doc's models.py
    parts (up to this block) over the demo's, so `from .models import Event` works as in an
    app. It runs with the locmem backend and the doc's own settings (those Django does not
    define); in tests.py every `test_*` function is called, without arguments.
- django, html: compiled by Django's template engine, rendered with a request that watched
  `comments-7` (as the event's view does) and with an `event` (pk 7) and its `channel`
  (`comments-7`) in the context.
- js: parsed as an ES module by node (`node --check`); ts: parsed by TypeScript (tests/ts).
- json: parses.
- sh: not run; the `./dev` subcommands, `python -m` modules, `manage.py` commands, pip extras
  and repository files it names exist.
- text: output, tables and diagrams; not run, but the `python -m` modules it names exist.

A block's test id is FILE:LINE of its opening fence.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import json
import re
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.template import engines
from django.test import RequestFactory, override_settings
from django.utils.module_loading import import_string

import pushgateway
from channels_app.drain import DEFAULT_DRAIN_SECONDS
from demo.models import Event
from pushgateway.backends.base import Limits
from pushgateway.coalescing import DEFAULT_WINDOW
from pushgateway.pages import DEFAULT_WATCH_TIMEOUT
from tests.support.docs import (
    DOCS,
    LANGUAGES,
    PROJECT_FILES,
    ROOT,
    Project,
    all_blocks,
    blocks,
    docs_app,
    python_modules,
    python_parts,
    run_module,
    shell_problems,
    undefined_names,
)
from tests.support.hints import sent

BLOCKS = all_blocks()
TYPESCRIPT = ROOT / "tests" / "ts" / "node_modules" / "typescript"
# A setting assigned, or a URLconf, outside the parts checked as such would go unchecked.
SETTING = re.compile(r"^([A-Z][A-Z0-9_]*\s*\+?=|urlpatterns\b)", re.M)


def params(*languages: str, marks=()) -> list:
    return [pytest.param(b, id=b.id, marks=marks) for b in BLOCKS if b.lang in languages]


def test_every_block_names_its_language():
    unnamed = [block.id for block in BLOCKS if block.lang not in LANGUAGES]
    assert unnamed == [], f"give each fence one of {LANGUAGES} (text for output)"


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("startproject")
    call_command("startproject", "mysite", str(root), verbosity=0)
    return Project(root / "mysite")


@pytest.mark.parametrize("block", params("python", marks=pytest.mark.django_db(transaction=True)))
def test_python_block_runs(block, project, outbox):
    parts = python_parts(block)
    for part in parts:
        if part.kind not in PROJECT_FILES:
            assert not SETTING.search(part.source), "settings or urlpatterns outside their file"
    if any(part.kind in PROJECT_FILES for part in parts):
        problems, names = project.check(block)
        assert problems == []
        for part in parts:
            if part.kind in PROJECT_FILES:
                assert undefined_names(part.source, names) == []
    with override_settings(**project.own_settings(block)), docs_app(block) as problems:
        assert problems == []
        for part in parts:
            if part.kind not in (*PROJECT_FILES, "models"):
                namespace = run_module(block, part)
                assert undefined_names(part.source, namespace) == [], part.kind or "snippet"


@pytest.mark.parametrize("block", params("django", "html"))
def test_template_block_compiles_and_renders(block, outbox):
    template = engines["django"].from_string(block.source)
    event = {"pk": 7, "title": "Party"}
    request = RequestFactory().get("/events/7/")
    pushgateway.watch(request, "comments-7")  # as the event's view does, before its query
    context = {"event": event, "channel": "comments-7"}
    assert template.render(context, request).strip()


@pytest.mark.django_db(transaction=True)
def test_readmes_view_and_template_render_the_position_of_the_channel_it_watches(outbox):
    """README's models, view and template, as a reader puts them together: the page carries
    the position its view read (the tag finds the request in the template context)."""
    readme = blocks(ROOT / "README.md")
    view = next(b for b in readme if b.lang == "python" and "def event_detail" in b.source)
    page = next(b for b in readme if b.lang == "django" and "pushgateway_script" in b.source)
    (part,) = [p for p in python_parts(view) if p.kind == "views"]
    name = re.search(r'render\(request, "([^"]+)"', part.source)[1]
    engine = {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "OPTIONS": {
            "loaders": [("django.template.loaders.locmem.Loader", {name: page.source})],
            "context_processors": ["django.template.context_processors.request"],
        },
    }
    event = Event.objects.create(title="Party")  # the demo's: README's Event is its shape
    pushgateway.publish(f"comments-{event.pk}")
    with override_settings(TEMPLATES=[engine]), docs_app(view):
        response = run_module(view, part)["event_detail"](RequestFactory().get("/"), event.pk)
    assert sent(outbox)[-1] == (f"comments-{event.pk}", None)
    rendered = re.search(r'id="pushgateway-config"[^>]*>(.*?)</script>', response.text)[1]
    position = json.loads(rendered)["positions"][f"comments-{event.pk}"]
    assert position["seq"] == 1


@pytest.mark.parametrize("block", params("js"))
def test_js_block_parses(block, tmp_path):
    path = tmp_path / "block.mjs"
    path.write_text(block.source)
    result = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


TRANSPILE = """
const ts = require(process.argv[1]);
const source = require("fs").readFileSync(0, "utf8");
const out = ts.transpileModule(source, {reportDiagnostics: true, fileName: "block.ts"});
for (const d of out.diagnostics) console.log(ts.flattenDiagnosticMessageText(d.messageText, " "));
process.exit(out.diagnostics.length ? 1 : 0);
"""


@pytest.mark.parametrize("block", params("ts"))
def test_ts_block_parses(block):
    assert TYPESCRIPT.exists(), "TypeScript is not installed; run ./dev setup (npm ci in tests/ts)"
    result = subprocess.run(
        ["node", "-e", TRANSPILE, str(TYPESCRIPT)],
        input=block.source,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("block", params("json"))
def test_json_block_parses(block):
    json.loads(block.source)


@pytest.mark.parametrize("block", params("sh"))
def test_shell_block_names_what_exists(block):
    assert shell_problems(block.source) == []


@pytest.mark.parametrize("block", params("text"))
def test_text_block_names_modules_that_exist(block):
    assert shell_problems("\n".join(f"python -m {m}" for m in python_modules(block.source))) == []


# What the prose names


def prose() -> dict[str, str]:
    return {str(path.relative_to(ROOT)): path.read_text() for path in DOCS}


def test_the_tests_the_docs_cite_exist():
    missing = []
    for doc, text in prose().items():
        for path, name in re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", text):
            source = ROOT / path
            if not source.exists():
                missing.append(f"{doc}: {path}")
            elif name and not re.search(
                rf"^\s*(async def|def|class) {name}\b", source.read_text(), re.M
            ):
                missing.append(f"{doc}: {path}::{name}")
    assert missing == []


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_docs_reach_a_file_and_heading():
    broken = []
    for doc, text in prose().items():
        for target, fragment in re.findall(r"\]\(([\w./-]*\.md|)(?:#([\w-]+))?\)", text):
            path = (ROOT / doc).parent / target if target else ROOT / doc
            if not path.exists():
                broken.append(f"{doc}: {target}")
            elif fragment:
                headings = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
                if fragment not in map(anchor, headings):
                    broken.append(f"{doc}: {target}#{fragment}")
    assert broken == []


def test_every_system_check_the_code_reports_is_in_settings_md():
    package = Path(pushgateway.__file__).parent  # the installed wheel's, in the wheel run
    code = "".join(p.read_text() for p in package.rglob("*.py"))
    ids = set(re.findall(r'id="(pushgateway\.[EW]\d{3})"', code))
    table = (ROOT / "docs" / "settings.md").read_text()
    assert ids and sorted(i for i in ids if f"| `{i}` |" not in table) == []


def documented_defaults(heading: str) -> dict[str, object]:
    """The options table under a settings.md heading: name -> default, where the default is
    written as a Python literal."""
    text = (ROOT / "docs" / "settings.md").read_text()
    section = text.split(f"{heading}\n", 1)[1].split("\n#", 1)[0]
    found = {}
    for name, default in re.findall(r"^\| `(\w+)` \| `([^`]+)`", section, re.M):
        with contextlib.suppress(ValueError, SyntaxError):
            found[name] = ast.literal_eval(default)
    return found


def code_defaults(cls: type) -> dict[str, object]:
    """The defaults of a backend's options type, and the keyword defaults of its __init__
    and those it passes **options on to."""
    options_type = getattr(cls, "options_type", None)
    fields = dataclasses.fields(options_type) if options_type else ()
    found: dict[str, object] = {field.name: field.default for field in fields}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass):
            for name, parameter in inspect.signature(klass.__init__).parameters.items():
                if parameter.default is not inspect.Parameter.empty:
                    found[name] = parameter.default
    return found


@pytest.mark.parametrize(
    ("heading", "backend"),
    [
        ("### Channels backend options", "pushgateway.backends.channels.ChannelsBackend"),
        ("### Fanout backend options", "pushgateway.backends.grip.GripBackend"),
        ("### Fanout backend options", "pushgateway.backends.realm.RealmBackend"),
        ("### Realm options", "pushgateway.backends.realm.RealmBackend"),
    ],
)
def test_settings_md_gives_each_backend_option_the_default_the_code_has(heading, backend):
    documented = documented_defaults(heading)
    cls = import_string(backend)
    assert documented, f"no options table under {heading}"
    assert set(documented) <= set(cls.options)
    defaults = code_defaults(cls)
    assert {name: defaults.get(name) for name in documented} == documented


def test_settings_md_gives_the_limits_and_common_options_the_codes_defaults():
    assert documented_defaults("## Limits") == Limits()._asdict()
    common = documented_defaults("## Options for every backend")
    assert common["COALESCE"] == DEFAULT_WINDOW
    assert common["WATCH_TIMEOUT"] == DEFAULT_WATCH_TIMEOUT
    assert common["DRAIN_SECONDS"] == DEFAULT_DRAIN_SECONDS
