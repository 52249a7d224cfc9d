"""``python -m bench <name> [options]`` — run one benchmark and print its figures."""

from __future__ import annotations

import argparse
import sys

from bench import executions, liveness, overshoot, replay, scale, takeover


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    liveness.add_parser(sub)
    takeover.add_parser(sub)
    overshoot.add_parser(sub)
    replay.add_parser(sub)
    scale.add_parser(sub)
    executions.add_parser(sub)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
