"""Round trip and throughput of a job through gearmand: the farm's code against raw gear.

    .venv/bin/python bench/dispatch.py [--calls 1000] [--pipelined 2000] [--stock-calls 1000]

One gearmand (builtin queue, 127.0.0.1) for the whole run, and three pairs of processes:
- farm: `farm:ping` through farm_client's Gearman.call() to a real `farm-worker run`
  (its control connection answers pings with its state);
- raw: the same echo through plain gear, client and worker with TCP_NODELAY set;
- stock: plain gear as shipped (no TCP_NODELAY: Nagle and delayed ACKs).
Each worker runs in its own process, like in production. The figures are medians of
`--calls` sequential calls, and jobs per second of `--pipelined` calls submitted without
waiting, then awaited. The last line compares them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import gear
import yaml

from farm_client.gearman_client import Gearman, Server
from farm_worker.protocol import PING

ECHO = "bench:echo"


# ---- raw gear ---------------------------------------------------------------------------------
class _NoDelay(gear.Connection):  # type: ignore[misc]
    def connect(self) -> None:
        super().connect()
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect(gear_obj: Any, port: int, nodelay: bool) -> None:
    """Connect a gear client or worker to 127.0.0.1:port, with or without TCP_NODELAY."""
    if nodelay:
        with gear_obj.connections_condition:
            gear_obj.inactive_connections.append(_NoDelay("127.0.0.1", port,
                                                          client_id=gear_obj.client_id))
            gear_obj.connections_condition.notify_all()
    else:
        gear_obj.addServer("127.0.0.1", port)
    gear_obj.waitForServer(10)


class _RawClient(gear.Client):  # type: ignore[misc]
    """gear's client; an Event per job so waiting costs no polling."""

    def __init__(self, port: int, nodelay: bool) -> None:
        super().__init__(client_id="bench-raw")
        connect(self, port, nodelay)

    def handleWorkComplete(self, packet: gear.Packet) -> Any:
        job = super().handleWorkComplete(packet)
        job.event.set()
        return job

    def call_async(self) -> gear.Job:
        job = gear.Job(ECHO, b"ping")
        job.event = threading.Event()
        self.submitJob(job, background=False)
        return job


def serve_echo(port: int, nodelay: bool) -> None:
    """A raw gear worker that echoes (run in its own process)."""
    worker = gear.Worker("bench-echo")
    connect(worker, port, nodelay)
    worker.registerFunction(ECHO)
    while True:
        job = worker.getJob()
        job.sendWorkComplete(job.arguments)


# ---- processes --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(port: int, command: str) -> list[str]:
    return Gearman([Server("127.0.0.1", port)]).admin(Server("127.0.0.1", port), command)


def wait_for_function(port: int, function: str, timeout_s: float = 60) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for line in admin(port, "status"):
            parts = line.split("\t")
            if parts[0] == function and parts[3] != "0":
                return
        time.sleep(0.1)
    raise RuntimeError(f"nobody registered {function}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- measurements -----------------------------------------------------------------------------
def median_ms(call: Any, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def farm_figures(port: int, calls: int, pipelined: int) -> tuple[float, float]:
    g = Gearman([Server("127.0.0.1", port)])
    try:
        for _ in range(20):  # warm up
            g.call(PING)
        rtt = median_ms(lambda: g.call(PING), calls)
        t0 = time.perf_counter()
        jobs = [g.start(PING, b"") for _ in range(pipelined)]
        for job in jobs:
            final = job.wait(60)
            assert final is not None and final.kind == "complete", final
        return rtt, pipelined / (time.perf_counter() - t0)
    finally:
        g.close()


def raw_figures(port: int, nodelay: bool, calls: int, pipelined: int) -> tuple[float, float]:
    c = _RawClient(port, nodelay)
    try:
        def once() -> None:
            assert c.call_async().event.wait(60)

        for _ in range(5 if not nodelay else 20):
            once()
        rtt = median_ms(once, calls)
        rate = 0.0
        if pipelined:
            t0 = time.perf_counter()
            jobs = [c.call_async() for _ in range(pipelined)]
            for job in jobs:
                assert job.event.wait(60)
            rate = pipelined / (time.perf_counter() - t0)
        return rtt, rate
    finally:
        c.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--stock-calls", type=int, default=1000,
                        help="sequential calls with stock gear (~44 ms each)")
    parser.add_argument("--pipelined", type=int, default=2000)
    parser.add_argument("--serve-echo", nargs=2, metavar=("PORT", "MODE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        serve_echo(int(args.serve_echo[0]), args.serve_echo[1] == "nodelay")
        return 0

    gearmand = shutil.which("gearmand") or "/usr/sbin/gearmand"
    scratch = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen([gearmand, "-L", "127.0.0.1", "-p", str(port),
                                       "-l", str(scratch / "gearmand.log")],
                                      stdin=subprocess.DEVNULL))
        end = time.monotonic() + 15
        while True:
            try:
                admin(port, "version")
                break
            except Exception:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        config = scratch / "worker.yaml"
        config.write_text(yaml.safe_dump({
            "worker_id": "bench", "gearman_servers": [f"127.0.0.1:{port}"],
            "tempest_versions": [], "install_on_demand": True,
            "cache_dir": str(scratch / "cache"), "work_dir": str(scratch / "work"),
            "results_dir": str(scratch / "results"), "log_level": "WARNING"}))
        farm_worker = str(Path(sys.executable).parent / "farm-worker")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_WORKER_")}
        procs.append(subprocess.Popen([farm_worker, "run", "-c", str(config)], env=env,
                                      stdin=subprocess.DEVNULL))
        wait_for_function(port, PING)
        farm_rtt, farm_rate = farm_figures(port, args.calls, args.pipelined)
        print(f"farm  (farm_client -> farm-worker): median {farm_rtt:.3f} ms over "
              f"{args.calls} calls; {farm_rate:,.0f} jobs/s pipelined ({args.pipelined})")

        results = {}
        for mode, calls, pipelined in (("nodelay", args.calls, args.pipelined),
                                       ("stock", args.stock_calls, 0)):
            echo = subprocess.Popen([sys.executable, __file__, "--serve-echo", str(port), mode],
                                    stdin=subprocess.DEVNULL)
            procs.append(echo)
            try:
                wait_for_function(port, ECHO)
                results[mode] = raw_figures(port, mode == "nodelay", calls, pipelined)
            finally:
                stop(echo)
                procs.remove(echo)
            rtt, rate = results[mode]
            label = "raw   (gear, TCP_NODELAY)" if mode == "nodelay" else "stock (gear as shipped)"
            print(f"{label}: median {rtt:.3f} ms over {calls} calls"
                  + (f"; {rate:,.0f} jobs/s pipelined ({pipelined})" if pipelined else ""))
        raw_rtt, raw_rate = results["nodelay"]
        stock_rtt = results["stock"][0]
        print(f"throughput: farm {farm_rate:,.0f} jobs/s = {farm_rate / raw_rate:.0%} of raw "
              f"{raw_rate:,.0f} jobs/s (goal >= 50%)")
        print(f"ping {farm_rtt:.2f} ms vs raw {raw_rtt:.2f} ms ({farm_rtt / raw_rtt:.1f}x, goal "
              f"<= 2x) vs stock gear {stock_rtt:.0f} ms ({stock_rtt / farm_rtt:.0f}x faster, "
              "goal >= 50x)")
        return 0
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
