from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from voxlens.cli import COMMAND_MODULES, build_parser


def test_help_lists_every_registered_command(repo_root: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "voxlens.cli", "--help"], capture_output=True, text=True, cwd=repo_root)
    assert out.returncode == 0
    parser = build_parser()
    names = [a for a in parser._subparsers._group_actions[0].choices]  # type: ignore[union-attr]
    assert names and len(names) >= len(COMMAND_MODULES)
    for name in names:
        assert name in out.stdout


def test_bad_config_is_a_clear_error_not_a_traceback(tmp_path: Path, repo_root: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[models]\nstt = 3\nnope = 1\n")
    out = subprocess.run([sys.executable, "-m", "voxlens.cli", "--config", str(bad), "models", "verify"], capture_output=True, text=True, cwd=repo_root)
    assert out.returncode == 2
    assert "configuration error" in out.stderr and "nope" in out.stderr and "Traceback" not in out.stderr
