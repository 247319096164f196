"""Gateway overhead and throughput against the fake upstream, at fixed concurrencies.

    .venv/bin/python bench/gateway_overhead.py [--concurrency 1,10,50,100] [--requests 2000]

Starts the fake LLM upstream and Switchboard (granian, `--workers` processes; SQLite for the
control plane since the hot path never touches the database; Redis from REDIS_URL or
redis://127.0.0.1:6379/14), seeds a tenant, key and deployment, then for each concurrency
sends the same non-streaming chat request straight to the upstream and through the gateway.
Reports requests/s, client-side p50/p99 latency, overhead (gateway minus direct at the same
percentile) and the gateway's own `x-switchboard-overhead-ms`. Loopback only, bounded in
requests and time. Writes JSON next to this file under results/.
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "Benchmark me"}]}
SEED = """
from decimal import Decimal
from gateway.services import deployment_create
from tenants.audit import AuditContext
from tenants.services import api_key_create, tenant_create
ctx = AuditContext.system("bench")
tenant = tenant_create(context=ctx, slug="bench", name="Bench")
deployment_create(context=ctx, tenant=tenant, fields={
    "name": "bench-model", "provider": "openai", "litellm_model": "openai/bench-model",
    "api_base": "UPSTREAM/v1", "input_price_per_mtok": Decimal("0.15"),
    "output_price_per_mtok": Decimal("0.6")})
print(api_key_create(context=ctx, tenant=tenant, name="bench")[1])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def drive(
    url: str, headers: dict[str, str], concurrency: int, requests: int, time_cap: float
) -> dict[str, Any]:
    latencies: list[float] = []
    overheads: list[float] = []
    errors = 0
    remaining = requests
    deadline = time.monotonic() + time_cap
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                started = time.perf_counter()
                async with session.post(url, json=BODY) as response:
                    await response.read()
                    ok = response.status == 200
                    overhead = response.headers.get("x-switchboard-overhead-ms")
                latencies.append((time.perf_counter() - started) * 1000)
                if not ok:
                    errors += 1
                if overhead is not None:
                    overheads.append(float(overhead))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    result = {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "mean_ms": statistics.fmean(latencies),
    }
    if overheads:
        result["server_overhead_p50_ms"] = percentile(overheads, 0.50)
        result["server_overhead_p99_ms"] = percentile(overheads, 0.99)
    return result


def start_stack(workers: int, var_dir: str) -> tuple[list[subprocess.Popen[bytes]], str, str, str]:
    env = {
        **os.environ,
        "SWITCHBOARD_ENV": "development",
        "SWITCHBOARD_VAR_DIR": var_dir,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
        "LOG_LEVEL": "WARNING",
    }
    fake_port, gateway_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{fake_port}"
    fake = subprocess.Popen(
        [PYTHON, "-m", "switchboard.fakellm", "--port", str(fake_port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    manage = [PYTHON, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run(
        [*manage, "shell", "-c", SEED.replace("UPSTREAM", upstream)],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    key = seeded.stdout.strip().splitlines()[-1]
    gateway = subprocess.Popen(
        [str(Path(PYTHON).parent / "granian"), "--interface", "asginl", "--host", "127.0.0.1",
         "--port", str(gateway_port), "--workers", str(workers), "--no-ws",
         "--log-level", "warning", "switchboard.asgi:application"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    wait_for(f"{upstream}/healthz")
    wait_for(f"http://127.0.0.1:{gateway_port}/healthz")
    return [fake, gateway], upstream, f"http://127.0.0.1:{gateway_port}", key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,10,50,100")
    parser.add_argument("--requests", type=int, default=2000, help="per run (bounded)")
    parser.add_argument("--time-cap", type=float, default=30.0, help="seconds per run")
    parser.add_argument("--workers", type=int, default=1, help="granian worker processes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per point (median kept)")
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as var_dir:
        processes, upstream, gateway, key = start_stack(args.workers, var_dir)
        try:
            report = asyncio.run(run_all(levels, args, upstream, gateway, key))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=10)
    print_report(report)
    out = ROOT / "bench" / "results" / f"gateway_overhead_{int(time.time())}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]


async def run_all(
    levels: list[int], args: argparse.Namespace, upstream: str, gateway: str, key: str
) -> dict[str, Any]:
    auth = {"authorization": f"Bearer {key}"}
    # Warm up connections, the snapshot and both code paths.
    await drive(f"{gateway}/v1/chat/completions", auth, 10, 200, 10)
    await drive(f"{upstream}/v1/chat/completions", {}, 10, 200, 10)
    points = []
    for level in levels:
        direct = [
            await drive(f"{upstream}/v1/chat/completions", {}, level, args.requests, args.time_cap)
            for _ in range(args.repeat)
        ]
        through = [
            await drive(f"{gateway}/v1/chat/completions", auth, level, args.requests, args.time_cap)
            for _ in range(args.repeat)
        ]
        direct_run, gateway_run = _median_run(direct), _median_run(through)
        points.append(
            {
                "concurrency": level,
                "direct": direct_run,
                "gateway": gateway_run,
                "overhead_p50_ms": gateway_run["p50_ms"] - direct_run["p50_ms"],
                "overhead_p99_ms": gateway_run["p99_ms"] - direct_run["p99_ms"],
            }
        )
    return {"workers": args.workers, "requests_per_run": args.requests, "points": points}


def print_report(report: dict[str, Any]) -> None:
    print(f"granian workers: {report['workers']}, requests per run: {report['requests_per_run']}")
    header = (
        f"{'conc':>5} {'direct rps':>11} {'gw rps':>8} {'direct p50':>11} {'gw p50':>8} "
        f"{'gw p99':>8} {'ovh p50':>8} {'ovh p99':>8} {'srv ovh p50':>12} {'srv p99':>8} {'err':>4}"
    )
    print(header)
    for point in report["points"]:
        direct, gateway = point["direct"], point["gateway"]
        print(
            f"{point['concurrency']:>5} {direct['rps']:>11.0f} {gateway['rps']:>8.0f} "
            f"{direct['p50_ms']:>11.2f} {gateway['p50_ms']:>8.2f} {gateway['p99_ms']:>8.2f} "
            f"{point['overhead_p50_ms']:>8.2f} {point['overhead_p99_ms']:>8.2f} "
            f"{gateway.get('server_overhead_p50_ms', 0):>12.2f} "
            f"{gateway.get('server_overhead_p99_ms', 0):>8.2f} {gateway['errors']:>4}"
        )


if __name__ == "__main__":
    sys.exit(main())
