"""Install the console's third-party browser files (the map library) from the npm registry.

The console (``server/static/console/``) is plain ES modules; its one dependency is Leaflet. Its files
are not committed: the install step (``scripts/lib.sh``, the Dockerfile) runs
``python -m server.console_assets``, which downloads the pinned package tarball, checks it against the
``integrity`` hash the npm registry publishes for that version (Subresource Integrity form,
``sha512-<base64>``: the same check ``npm ci`` makes against a lock file) and extracts the listed
files into ``server/static/vendor/<package>/``.

Why not ``npm ci``: Node.js is not part of a fresh Debian with Python, and the console needs no build
(no bundler, no transpiler): three files of one package. Fetching them with Python's standard library
needs nothing beyond the project's own interpreter, and the pinned hash makes the result exactly what
a lock file would give. ``NPM_CONFIG_REGISTRY`` (npm's own setting) points at a mirror.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_REGISTRY = "https://registry.npmjs.org"
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
STAMP = ".installed"
DOWNLOAD_TIMEOUT_S = 60
MAX_TARBALL_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class NpmPackage:
    """A pinned npm package: ``integrity`` is the registry's ``dist.integrity`` of that version;
    ``files`` maps paths inside the tarball to paths under the package's vendor folder."""

    name: str
    version: str
    integrity: str
    files: tuple[tuple[str, str], ...]

    def tarball_url(self, registry: str) -> str:
        """Where the registry serves the version's tarball (``<registry>/<name>/-/<name>-<version>.tgz``)."""
        return f"{registry.rstrip('/')}/{self.name}/-/{self.name}-{self.version}.tgz"


LEAFLET = NpmPackage(
    name="leaflet",
    version="1.9.4",
    integrity="sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZAxwQixURb+FA74PA==",
    files=(
        ("package/dist/leaflet-src.esm.js", "leaflet-src.esm.js"),
        ("package/dist/leaflet.css", "leaflet.css"),
        ("package/LICENSE", "LICENSE"),
    ),
)
PACKAGES = (LEAFLET,)


class AssetError(RuntimeError):
    """A download failed, or the tarball is not the pinned one (hash mismatch, a listed file missing)."""


def check_integrity(data: bytes, integrity: str) -> None:
    """Raise :class:`AssetError` unless ``data`` hashes to ``integrity`` (``sha512-<base64 digest>``)."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512" or not expected:
        raise AssetError(f"unsupported integrity {integrity!r} (expected sha512-...)")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise AssetError(f"integrity mismatch: expected sha512-{expected}, got sha512-{actual}")


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        data: bytes = response.read(MAX_TARBALL_BYTES + 1)
    if len(data) > MAX_TARBALL_BYTES:
        raise AssetError(f"{url}: larger than {MAX_TARBALL_BYTES} bytes")
    return data


def installed(package: NpmPackage, vendor_dir: Path = VENDOR_DIR) -> bool:
    """Whether ``package`` at its pinned version and hash is in ``vendor_dir`` with all its files."""
    folder = vendor_dir / package.name
    stamp = folder / STAMP
    return (
        stamp.is_file()
        and stamp.read_text().strip() == f"{package.name}@{package.version} {package.integrity}"
        and all((folder / target).is_file() for _, target in package.files)
    )


def install(
    package: NpmPackage,
    vendor_dir: Path = VENDOR_DIR,
    *,
    registry: str = DEFAULT_REGISTRY,
    fetch: Callable[[str], bytes] = _download,
) -> bool:
    """Download, verify and extract ``package`` unless it is already installed. Returns whether it
    did anything. Raises :class:`AssetError` (nothing is written then) or ``OSError``."""
    if installed(package, vendor_dir):
        return False
    url = package.tarball_url(registry)
    try:
        data = fetch(url)
    except OSError as exc:
        raise AssetError(f"could not download {url}: {exc}") from exc
    check_integrity(data, package.integrity)
    contents: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, target in package.files:
            try:
                extracted = tar.extractfile(member)
            except KeyError:
                extracted = None
            if extracted is None:
                raise AssetError(f"{package.name}@{package.version}: {member} is not in the tarball")
            contents[target] = extracted.read()
    folder = vendor_dir / package.name
    folder.mkdir(parents=True, exist_ok=True)
    for target, body in contents.items():  # targets are our own constants: no path from the tarball
        (folder / target).write_bytes(body)
    (folder / STAMP).write_text(f"{package.name}@{package.version} {package.integrity}\n")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m server.console_assets [--check]``: install (or, with ``--check``, only verify
    presence of) the pinned packages. Exit status 0 when they are in place, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="python -m server.console_assets", description="Install the console's map library."
    )
    parser.add_argument("--check", action="store_true", help="only report whether the files are in place")
    args = parser.parse_args(argv)
    # npm reads its settings case-insensitively; both spellings are common.
    registry = os.environ.get("NPM_CONFIG_REGISTRY") or os.environ.get("npm_config_registry")  # noqa: SIM112
    registry = registry or DEFAULT_REGISTRY
    status = 0
    for package in PACKAGES:
        label = f"{package.name}@{package.version}"
        if args.check:
            ok = installed(package)
            print(f"{label}: {'installed' if ok else 'missing'}")
            status |= 0 if ok else 1
            continue
        try:
            changed = install(package, registry=registry)
        except AssetError as exc:
            print(f"error: {label}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{label}: {'installed into ' + str(VENDOR_DIR / package.name) if changed else 'up to date'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
