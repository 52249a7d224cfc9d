"""The child process of a ``python`` job: ``python -m workers.node.pycall pkg.module:function``.

Imports ``pkg.module``, finds ``function`` in it (a dotted path such as ``Class.method`` is
followed), and calls it with the keyword arguments of the JSON object in
``QWC_PYCALL_KWARGS`` (none when unset). A coroutine function is run to its end with
``asyncio.run``. What it returns is printed on stdout (as JSON when it can be, else its
``repr``; nothing for None), with whatever it printed itself: that is the execution's output.

Exit status: 0 when it returned, 1 when it raised (the traceback goes to stderr), 2 when it
could not be called (no such module or function, arguments that are not a JSON object);
a ``sys.exit(n)`` in it exits ``n``.
The execution's identity is in the environment (``QWC_JOB_ID``, …), as for any command.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["EXIT_CANNOT_CALL", "EXIT_RAISED", "main", "resolve"]

EXIT_RAISED = 1
EXIT_CANNOT_CALL = 2
_KWARGS_ENV = "QWC_PYCALL_KWARGS"  # workers.node.executors.PYCALL_KWARGS_ENV


def resolve(target: str) -> Callable[..., Any]:
    """The callable named ``pkg.module:function``. Raises ``ImportError`` (module),
    ``AttributeError`` (name) or ``TypeError`` (not callable), saying which."""
    module_name, _, qualname = target.partition(":")
    if not module_name or not qualname:
        raise ImportError(f"{target!r} is not pkg.module:function")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise TypeError(f"{target} is a {type(found).__name__}, not a callable")
    return found  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    """Call the target named in ``argv`` (default ``sys.argv[1:]``); the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m workers.node.pycall pkg.module:function", file=sys.stderr)
        return EXIT_CANNOT_CALL
    try:
        function = resolve(args[0])
        kwargs = json.loads(os.environ.get(_KWARGS_ENV) or "{}")
        if not isinstance(kwargs, dict):
            raise TypeError(f"{_KWARGS_ENV} is not a JSON object")
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        print(f"cannot call {args[0]}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_CALL
    try:
        result = function(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_wait(result))
    except SystemExit as exc:  # the user's code chose its exit status
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else EXIT_RAISED
    except Exception:
        traceback.print_exc()
        return EXIT_RAISED
    if result is not None:
        print(_shown(result))
    return 0


async def _wait(awaitable: Any) -> Any:
    return await awaitable


def _shown(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.exit(main())
