"""One home for each fact: the browser module holds exactly pushgateway.constants' values.

The JavaScript reads them from its generated FACTS table, so what is checked here is that the
table is current, that the module really exports those values, and that no code, name or
default is written out again elsewhere in it.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

import pushgateway
from pushgateway import constants
from pushgateway.constants import CloseCode, ErrorCode

# The checkout's browser module; in the wheel run (a copy of the project without it), the one
# the installed package ships.
BROWSER_MODULE = Path(__file__).resolve().parents[2] / "static" / "js" / "pushgateway.js"
if not BROWSER_MODULE.exists():
    BROWSER_MODULE = Path(pushgateway.__file__).parent / "static" / "pushgateway" / "pushgateway.js"
SOURCE = BROWSER_MODULE.read_text()


def outside_the_table(source: str) -> str:
    head, _, rest = source.partition(constants.BEGIN)
    return head + rest.partition(constants.END)[2]


def test_the_browser_modules_table_is_generated_from_the_python_facts():
    assert constants.with_table(SOURCE) == SOURCE, "the FACTS table is stale: run ./dev facts"


def test_the_browser_module_runs_with_the_python_facts():
    script = """
        const api = require(process.argv[1]);
        const client = api.createClient({WebSocket: class {}});
        console.log(JSON.stringify({facts: api.FACTS, defaults: api.DEFAULTS,
                                    header: api.CLIENT_HEADER, field: api.CLIENT_FIELD}));
    """
    out = subprocess.run(
        ["node", "-e", script, str(BROWSER_MODULE)], capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout)
    assert found["facts"] == constants.browser_facts()
    assert found["defaults"].items() >= constants.CLIENT_DEFAULTS.items()
    assert (found["header"], found["field"]) == (constants.CLIENT_HEADER, constants.CLIENT_FIELD)


@pytest.mark.parametrize(
    "fact",
    [
        *(str(code.value) for code in CloseCode),
        f'"{constants.CONFIG_ELEMENT_ID}"',
        *(f'"{code.value}"' for code in ErrorCode),
        *(f'"{name}"' for name in (constants.CLIENT_HEADER, constants.CLIENT_FIELD)),
        *(f'"{path}"' for path in (constants.WEBSOCKET_PATH, constants.POSITIONS_PATH)),
        f'"{constants.BAYEUX_DOT}"',
        *(f'"{name}"' for name in constants.FRAGMENT_ATTRIBUTES.values()),
        f'"{constants.FRAGMENT_EVENT}"',
        "A-Za-z0-9._-",
    ],
)
def test_no_fact_is_written_out_again_in_the_browser_module(fact):
    assert fact not in outside_the_table(SOURCE)


def test_the_typescript_declarations_name_the_python_values():
    declarations = (BROWSER_MODULE.parent / "pushgateway.d.ts").read_text()
    declared = dict(re.findall(r'declare const (CLIENT_\w+): "([^"]*)"', declarations))
    assert declared == {
        "CLIENT_HEADER": constants.CLIENT_HEADER,
        "CLIENT_FIELD": constants.CLIENT_FIELD,
    }
    facts = re.search(r"interface Facts \{(.*?)\n\}", declarations, re.S)[1]
    assert set(re.findall(r"^  (\w+)\??:", facts, re.M)) == set(constants.browser_facts())


def test_error_codes_are_each_an_error_or_a_refusal_once():
    assert set(constants.REFUSALS) <= set(ErrorCode)
    assert len({code.value for code in ErrorCode}) == len(ErrorCode)
    assert [c for c in ErrorCode if c.is_refusal] == [
        ErrorCode.FORBIDDEN,
        ErrorCode.TOO_MANY_SUBSCRIPTIONS,
        ErrorCode.UNAVAILABLE,
        ErrorCode.RATE_LIMITED,
    ]


def test_the_channel_pattern_holds_the_length_limit():
    assert constants.CHANNEL_RE.fullmatch("a" * constants.MAX_CHANNEL_LENGTH)
    assert not constants.CHANNEL_RE.fullmatch("a" * (constants.MAX_CHANNEL_LENGTH + 1))


def test_the_public_api_is_what_the_package_docstring_lists():
    import pushgateway

    listed = re.search(r"Public API: (.*?)\.\n", pushgateway.__doc__, re.S)[1]
    assert sorted(re.findall(r"\w+", listed)) == sorted(pushgateway.__all__)
