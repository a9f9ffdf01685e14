"""The one entry point, `voxlens`, with a subcommand per job.

Each area registers its own subcommands (a `register(subparsers)` function in
the modules below), so this file stays small and heavy imports (models,
onnxruntime, grpc) happen only when their subcommand runs.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from voxlens import __version__
from voxlens.config import ConfigError

# Modules that contribute subcommands, in the order `voxlens --help` lists them.
COMMAND_MODULES = [
    "voxlens.cli_models",
    "device.cli_speech",
    "gateway.cli",
    "device.cli_device",
    "device.cli_wakeword",
    "device.wyoming.cli",
    "bench.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxlens", description="VoxLens: a hands-free voice assistant.")
    parser.add_argument("--version", action="version", version=f"voxlens {__version__}")
    parser.add_argument("--config", help="TOML config file (default: $VOXLENS_CONFIG or ~/.config/voxlens/voxlens.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"voxlens: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
