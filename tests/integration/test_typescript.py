"""The browser module's TypeScript declarations compile against what a TypeScript user
writes (tests/ts/usage.ts), with tsc from tests/ts (installed by ./dev setup)."""

import subprocess
from pathlib import Path

TS = Path(__file__).resolve().parents[1] / "ts"


def test_declarations_type_check_a_typescript_users_code():
    tsc = TS / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "TypeScript is not installed; run ./dev setup (npm ci in tests/ts)"
    result = subprocess.run(
        [str(tsc), "-p", str(TS / "tsconfig.json")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_type_error_is_caught(tmp_path):
    """The check can fail: a call the declarations forbid does not compile."""
    tsc = TS / "node_modules" / ".bin" / "tsc"
    wrong = tmp_path / "wrong.ts"
    module = TS.parent.parent / "static" / "js" / "pushgateway.mjs"
    call = "createClient().subscribe(7, () => {});"  # a number where a channel name goes
    wrong.write_text(f'import {{createClient}} from "{module}";\n{call}\n')
    result = subprocess.run(
        [
            str(tsc),
            "--noEmit",
            "--strict",
            "--module",
            "nodenext",
            "--lib",
            "es2022,dom",
            str(wrong),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "not assignable" in result.stdout
