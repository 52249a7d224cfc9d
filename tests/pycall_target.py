"""Callables run by the ``python`` executor in tests (``tests.pycall_target:<name>``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any


def greet(name: str, times: int = 1) -> dict[str, Any]:
    """Prints a greeting ``times`` times; returns what it saw."""
    for _ in range(times):
        print(f"hello {name}")
    return {"name": name, "execution": os.environ.get("QWC_EXECUTION_ID")}


def boom() -> None:
    raise RuntimeError("it went wrong")


async def doubled(x: int) -> int:
    return 2 * x


def quits(code: int) -> None:
    sys.exit(code)


def spawns_and_waits(pid_file: str) -> None:
    """Starts a grandchild sleeping 30 s, writes its pid, then sleeps itself."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()} {child.pid}\n")
    time.sleep(30)


class Greeter:
    @staticmethod
    def hi() -> str:
        return "hi"


not_callable = 42
