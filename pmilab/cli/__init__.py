"""`pmilab` command line: one module per subcommand, each with `add_parser(subparsers)`.

Bad input (InputError, a missing, existing or unwritable path) ends with one line on stderr and
exit code 2, never a traceback; set PMILAB_DEBUG=1 to see the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pmilab import __version__
from pmilab.errors import InputError

# Subcommands in the order `pmilab --help` lists them; a module missing here is simply skipped.
SUBCOMMANDS = ["verify", "check", "power", "compare", "fit", "figures", "pretrain", "eval"]
SUBCOMMANDS += ["export"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pmilab",
        description=(
            "Check the theory of multimodal contrastive learning (CLIP / WPSE / KME-CLIP) against "
            "joint distributions with exactly known pointwise mutual information."
        ),
        epilog="Run `pmilab COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"pmilab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"pmilab.cli.{name}")
        except ModuleNotFoundError as e:  # subcommand not built yet
            if e.name == f"pmilab.cli.{name}":
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except (
        InputError,
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ) as e:
        if os.environ.get("PMILAB_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"pmilab {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pmilab {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
