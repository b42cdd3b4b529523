"""Short-lived Serve drivers for ``imagetagger serve``: wait until deployed, shut down.

``imagetagger serve`` never imports Ray itself (it stays small for the service's whole
life); it runs these as ``python -m deployments.control ...`` against its private
cluster. Each connects, does one thing with Serve's public API and exits, so no driver
stays connected (and the dashboard's Serve module is not made one just to be polled).

    python -m deployments.control wait ADDRESS APP [APP ...]   # 0 once all RUNNING
    python -m deployments.control shutdown ADDRESS             # Serve's graceful stop
"""

from __future__ import annotations

import argparse
import sys
import time

import ray
from ray import serve

POLL_S = 0.5
DEPLOY_FAILED = "DEPLOY_FAILED"
RUNNING = "RUNNING"


def _connect(address: str) -> None:
    ray.init(address=address, namespace="serve", log_to_driver=False, logging_level="ERROR")


def wait_running(names: list[str], timeout_s: float) -> int:
    """0 once every application is RUNNING; 1 (and the reason) when one failed or timed out."""
    deadline = time.monotonic() + timeout_s
    while True:
        applications = serve.status().applications
        for name in names:
            app = applications.get(name)
            if app is not None and app.status == DEPLOY_FAILED:
                print(f"application {name!r} failed to deploy: {app.message}", file=sys.stderr)
                return 1
        if all(name in applications and applications[name].status == RUNNING for name in names):
            return 0
        if time.monotonic() > deadline:
            print(f"applications not running after {timeout_s:.0f} s", file=sys.stderr)
            return 1
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.control")
    commands = parser.add_subparsers(dest="command", required=True)
    wait = commands.add_parser("wait", help="wait until the applications are RUNNING")
    wait.add_argument("address")
    wait.add_argument("names", nargs="+")
    wait.add_argument("--timeout", type=float, default=600.0)
    shutdown = commands.add_parser("shutdown", help="Serve's graceful shutdown")
    shutdown.add_argument("address")
    args = parser.parse_args(argv)

    _connect(args.address)
    if args.command == "wait":
        return wait_running(args.names, args.timeout)
    serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
