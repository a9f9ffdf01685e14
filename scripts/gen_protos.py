"""Regenerate the Python stubs for protos/assistant.proto with grpcio-tools.

Usage: python scripts/gen_protos.py [--out DIR]   (default: the repo root)
The committed stubs must equal what this writes; tests/test_protos.py checks.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = "protos/assistant.proto"


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency

    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{ROOT}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        str(ROOT / PROTO),
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO}")
    return sorted((out / "protos").glob("assistant_pb2*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT)
    written = generate(parser.parse_args().out)
    for path in written:
        print(path)


if __name__ == "__main__":
    sys.exit(main())
