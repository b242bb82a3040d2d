"""The `ttzo` command line: one entry point, one subcommand per module in ttzo.host.commands.

Each module in host/commands/ defines `register(subparsers)`, which adds its subcommand(s)
and sets `func` (called with the parsed arguments, returns an exit code).  Discovery keeps
subcommands independent: adding one never edits this file.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands

DESCRIPTION = """\
ttzo: tensor-train, back-propagation-free training, from the golden model to FPGA gateware.

Typical flow:
  ttzo model mnist --rank 6 --json        sizes, MACs, contraction order of a network
  ttzo train mnist --arith fixed ...       train with zeroth-order optimizers (golden model)
  ttzo sim tt-engine --net mnist ...       co-simulate the RTL against golden, bit for bit
  ttzo build --board icebreaker            Verilog, bitstream, resource and Fmax report
  ttzo sweep SPEC.yaml --out DIR           design-space sweep (ranks x formats x lanes x boards), Ray or serial
  ttzo demo                                train on the virtual board and check every bit against golden
  ttzo virtual-board --port N              serve the simulated board on a TCP port
  ttzo train mnist --backend board --port socket://127.0.0.1:N
Run 'ttzo COMMAND --help' for the options of each command.
"""


def group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """The subparsers of command group `name` (e.g. `ttzo sim ...`), created on first use.

    Lets several modules add subcommands to one group (`ttzo bench golden`, `ttzo bench link`)
    without knowing about each other.
    """
    groups = sub.__dict__.setdefault("_ttzo_groups", {})
    if name not in groups:
        p = sub.add_parser(name, help=help, description=help)
        groups[name] = p.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")
        p.set_defaults(func=lambda args, p=p: (p.print_help(), 2)[1])
    return groups[name]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttzo", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError) as exc:  # clear message, no traceback, for bad input
        print(f"ttzo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
