"""docs/clients.md examples run against the live gateway: TypeScript with the openai npm package."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EXAMPLE = Path(__file__).resolve().parents[2] / "clients" / "typescript"


def _run(command: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_typescript_example_with_the_openai_npm_package(world) -> None:
    world.deploy("gpt-4o-mini")
    world.wait_for_model("gpt-4o-mini")
    if not (EXAMPLE / "node_modules" / "openai").exists():
        _run(["npm", "ci", "--no-audit", "--no-fund"])
    _run(["npx", "tsc", "-p", "tsconfig.json"])
    env = {
        **os.environ,
        "SWITCHBOARD_URL": f"{world.url}/v1",
        "SWITCHBOARD_API_KEY": world.key,
        "SWITCHBOARD_MODEL": "gpt-4o-mini",
    }
    lines = [json.loads(line) for line in _run(["node", "dist/example.js"], env).splitlines()]
    assert lines[0]["content"].startswith("Fake reply to: Say hello from TypeScript")
    assert lines[0]["usage"]["completion_tokens"] > 0
    assert lines[1]["streamed"] == lines[0]["content"]
