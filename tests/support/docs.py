"""The code blocks of README.md and docs/*.md, and the places each kind of block runs in.

tests/unit/test_docs.py states the convention. Settings and URLconfs run on top of a new
`startproject`; models in an app registry of their own; views, tests and snippets as modules
of a package whose `models` is the doc's own models over the demo's.
"""

from __future__ import annotations

import builtins
import re
import shlex
import symtable
import sys
import tomllib
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from django.apps import apps
from django.conf import global_settings
from django.core import checks
from django.core.checks.registry import registry
from django.core.management import get_commands
from django.db.models import Model
from django.db.models.signals import post_delete, post_save
from django.test import override_settings
from django.test.utils import isolate_apps

import pushgateway
from pushgateway import registry as hint_registry

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Info strings a fence may carry; text is output, tables and diagrams (shown, never run).
LANGUAGES = ("python", "django", "html", "js", "ts", "json", "sh", "text")

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<info>.*)$")
# A Python block holds one or more files, each opened by a comment line naming it.
FILE_COMMENT = re.compile(r"^# (?P<name>\w+)\.py\b")
# Parts that are checked as the project's configuration rather than run as app modules.
PROJECT_FILES = ("settings", "urls")
INSTALLS = re.compile(r"^INSTALLED_APPS\s*\+?=", re.M)
# The package a doc's views, tests and snippets are modules of.
PACKAGE = "docs_app"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    source: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Part:
    """One file of a Python block: `kind` is its name ("settings", "urls", "models",
    "views", ...) or "" for code that names no file."""

    kind: str
    source: str
    line: int  # of its first line in the Markdown file


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, dedented to their fence."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, end = len(opening["indent"]), i + 1
        while not lines[end].strip().startswith("```"):
            end += 1
        words = opening["info"].split()
        source = "\n".join(line[indent:] for line in lines[i + 1 : end]) + "\n"
        found.append(Block(path, i + 1, words[0] if words else "", source))
        i = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in DOCS for block in blocks(path)]


def python_parts(block: Block) -> list[Part]:
    parts: list[Part] = []
    kind, start, lines = "", block.line + 1, []
    for number, line in enumerate(block.source.splitlines(), block.line + 1):
        named = FILE_COMMENT.match(line)
        if named:
            if "".join(lines).strip():
                parts.append(Part(kind, "\n".join(lines) + "\n", start))
            kind, start, lines = named["name"], number, []
        lines.append(line)
    if "".join(lines).strip():
        parts.append(Part(kind, "\n".join(lines) + "\n", start))
    return parts


def doc_parts(block: Block, kind: str) -> list[tuple[Block, Part]]:
    """The `kind` parts of `block`'s doc, up to and including its own."""
    return [
        (earlier, part)
        for earlier in blocks(block.path)
        if earlier.lang == "python" and earlier.line <= block.line
        for part in python_parts(earlier)
        if part.kind == kind
    ]


def execute(part: Part, block: Block, namespace: dict) -> dict:
    """Run a part's code in `namespace` (a module's globals); tracebacks name the doc's line."""
    padded = "\n" * (part.line - 1) + part.source
    exec(compile(padded, str(block.path), "exec"), namespace)
    return namespace


def undefined_names(source: str, namespace: dict) -> list[str]:
    """Globals the functions and lambdas of `source` read that neither the module nor
    builtins define: what would fail only once the function is called."""
    missing: set[str] = set()

    def visit(table: symtable.SymbolTable) -> None:
        for child in table.get_children():
            for symbol in child.get_symbols():
                name = symbol.get_name()
                read = symbol.is_global() and symbol.is_referenced()
                if read and name not in namespace and not hasattr(builtins, name):
                    missing.add(name)
            visit(child)

    visit(symtable.symtable(source, "<doc>", "exec"))
    return sorted(missing)


def module(name: str, namespace: dict) -> types.ModuleType:
    result = types.ModuleType(name)
    result.__dict__.update((k, v) for k, v in namespace.items() if not k.startswith("__"))
    return result


# The project: settings.py and urls.py as startproject writes them, with the doc's parts added.


class Project:
    """A new `startproject` (in `directory`) that a doc's settings and URLconfs extend."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def module(self, name: str) -> dict:
        path = self.directory / f"{name}.py"
        namespace = {"__name__": f"mysite.{name}", "__file__": str(path)}
        exec(compile(path.read_text(), str(path), "exec"), namespace)
        return namespace

    def settings(self, block: Block) -> dict:
        """settings.py after the doc's settings parts up to `block`. A doc that does not
        install the apps itself extends the project README sets up."""
        namespace = self.module("settings")
        parts = doc_parts(block, "settings")
        everything = [
            p.source
            for b in blocks(block.path)
            if b.lang == "python"
            for p in python_parts(b)
            if p.kind == "settings"
        ]
        if not any(INSTALLS.search(source) for source in everything):
            parts = readme_setup() + parts
        for earlier, part in parts:
            execute(part, earlier, namespace)
        return namespace

    def check(self, block: Block) -> tuple[list[checks.CheckMessage], dict]:
        """What Django's system checks say, warnings and up, about the doc's settings and
        URLconf as they stand after `block`; and the names those define."""
        settings = self.settings(block)
        overrides = {k: v for k, v in settings.items() if k.isupper() and k != "DATABASES"}
        with checks_restored(), override_settings(**overrides):
            urls = self.module("urls")
            for earlier, part in doc_parts(block, "urls"):
                execute(part, earlier, urls)
            with override_settings(ROOT_URLCONF=module("mysite.urls", urls)):
                found = checks.run_checks()
        # The checks of the apps this test process installs run whatever the doc installs.
        installed = {entry.rsplit(".", 1)[-1] for entry in settings["INSTALLED_APPS"]}
        absent = {config.label for config in apps.get_app_configs()} - installed
        problems = [
            m for m in found if m.level >= checks.WARNING and m.id.split(".")[0] not in absent
        ]
        return problems, {**settings, **urls}

    def own_settings(self, block: Block) -> dict:
        """The settings the doc adds that Django does not define (FANOUT_KEY, REDIS_URL),
        for its other parts to read; the backend stays the test's."""
        made = self.module("settings")
        return {
            k: v
            for k, v in self.settings(block).items()
            if k.isupper()
            and k not in made
            and not hasattr(global_settings, k)
            and k not in ("PUSHGATEWAY", "CHANNEL_LAYERS")
        }


def readme_setup() -> list[tuple[Block, Part]]:
    """README's first settings part: the setup every other doc builds on."""
    for block in blocks(ROOT / "README.md"):
        for part in python_parts(block) if block.lang == "python" else ():
            if part.kind == "settings":
                return [(block, part)]
    raise AssertionError("README.md has no settings.py part")


@contextmanager
def checks_restored() -> Iterator[None]:
    """Apps installed for a moment (admin, auth) register checks for good: forget them."""
    saved = set(registry.registered_checks), set(registry.deployment_checks)
    try:
        yield
    finally:
        registry.registered_checks, registry.deployment_checks = saved


@contextmanager
def receivers_restored() -> Iterator[None]:
    """A doc's signal handler (the pattern it replaces) stays connected only while it runs."""
    saved = {signal: list(signal.receivers) for signal in (post_save, post_delete)}
    try:
        yield
    finally:
        for signal, receivers in saved.items():
            signal.receivers = receivers
            signal.sender_receivers_cache.clear()


# The app: a doc's models, and the package its other parts are modules of.


def defined_models(namespace: dict) -> list[type[Model]]:
    return [
        value
        for value in namespace.values()
        if isinstance(value, type)
        and issubclass(value, Model)
        and value.__module__ == namespace["__name__"]
    ]


@contextmanager
def docs_app(block: Block) -> Iterator[list]:
    """Install the package `block`'s other parts run in, where `from .models import X` finds
    the doc's own models (its models.py parts up to `block`, each in an app registry of its
    own, in the demo app's tables) or else the demo's. Yields the problems of `block`'s own
    models: Django's model checks and undefined names."""
    import demo.models

    registered = set(hint_registry._registry)
    models = dict(vars(demo.models))
    problems: list = []
    try:
        for earlier, part in doc_parts(block, "models"):
            namespace = {"__name__": f"demo.docs_models_{part.line}", "__package__": PACKAGE}
            with isolate_apps("demo"):
                execute(part, earlier, namespace)
                defined = defined_models(namespace)
                if earlier == block:
                    problems += [e for m in defined for e in m.check() if e.level >= checks.WARNING]
                    problems += undefined_names(part.source, namespace)
                    if not defined:
                        problems.append("a models.py part that defines no model")
            models.update(namespace)
        package = module(PACKAGE, {})
        package.__path__ = []
        package.models = module(f"{PACKAGE}.models", models)
        sys.modules[PACKAGE], sys.modules[package.models.__name__] = package, package.models
        yield problems
    finally:
        sys.modules.pop(PACKAGE, None)
        sys.modules.pop(f"{PACKAGE}.models", None)
        for model in set(hint_registry._registry) - registered:
            pushgateway.unregister(model)


def run_module(block: Block, part: Part) -> dict:
    """Run a part as a module of the docs' package; call a tests.py part's tests."""
    namespace = {"__name__": f"{PACKAGE}.{part.kind or 'snippet'}_{part.line}"}
    namespace["__package__"] = PACKAGE
    with receivers_restored():
        execute(part, block, namespace)
        if part.kind == "tests":
            tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
            assert tests, "a tests.py part without a test_ function"
            for test in tests:
                test()
    return namespace


# Shell: what a command names must exist.


def dev_subcommands() -> set[str]:
    """The subcommands ./dev's usage lines name."""
    return set(re.findall(r"^#\s+\./dev ([\w-]+)", (ROOT / "dev").read_text(), re.M))


def extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


def shell_commands(source: str) -> list[list[str]]:
    """Each command as words: continuation lines joined, comments and VAR=value dropped."""
    commands = []
    for line in source.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        if words:
            commands.append(words)
    return commands


def python_modules(source: str) -> list[str]:
    return re.findall(r"python -m ([\w.]+)", source)


def shell_problems(source: str) -> list[str]:
    """What the commands of `source` name that does not exist."""
    problems = [f"no module {m!r}" for m in python_modules(source) if find_spec(m) is None]
    for words in shell_commands(source):
        command, args = words[0], words[1:]
        if command == "./dev" and args[0] not in dev_subcommands():
            problems.append(f"./dev has no subcommand {args[0]!r}")
        if command.rsplit("/", 1)[-1] == "pip":
            for arg in args:
                wanted = re.fullmatch(r"(django-pushgateway|\.)\[([\w,]+)\]", arg)
                unknown = set(wanted[2].split(",")) - extras() if wanted else set()
                problems += [f"no extra {extra!r}" for extra in sorted(unknown)]
        if "manage.py" in words[:-1]:
            name = words[words.index("manage.py") + 1]
            if name not in get_commands():
                problems.append(f"no management command {name!r}")
        for arg in args:
            target = re.fullmatch(r"([a-z_][\w.]*):(\w+)", arg)  # an ASGI application
            if target and find_spec(target[1]) is None:
                problems.append(f"no module {target[1]!r}")
            path = re.fullmatch(r"((?:tests|docs|demo|bench|static)/[\w./-]+)(::\w+)?", arg)
            if path and not (ROOT / path[1]).exists():
                problems.append(f"no file {path[1]}")
    return problems
