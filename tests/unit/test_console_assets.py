"""The console's asset installer: it writes the pinned files only from a tarball whose hash matches,
and does nothing when they are already in place (no network: the tarballs are built here)."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from server.console_assets import AssetError, NpmPackage, check_integrity, install, installed


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


DATA = tarball({"package/dist/lib.js": b"export const x = 1;", "package/LICENSE": b"BSD"})
PACKAGE = NpmPackage(
    "lib", "1.0.0", sri(DATA), (("package/dist/lib.js", "lib.js"), ("package/LICENSE", "LICENSE"))
)


def test_installs_the_listed_files_once(tmp_path: Path) -> None:
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return DATA

    assert install(PACKAGE, tmp_path, registry="https://registry.example/", fetch=fetch)
    assert fetched == ["https://registry.example/lib/-/lib-1.0.0.tgz"]
    assert (tmp_path / "lib" / "lib.js").read_bytes() == b"export const x = 1;"
    assert installed(PACKAGE, tmp_path)
    assert not install(PACKAGE, tmp_path, fetch=fetch)  # already there: no download
    assert len(fetched) == 1
    (tmp_path / "lib" / "LICENSE").unlink()
    assert not installed(PACKAGE, tmp_path)


def test_a_tarball_with_another_hash_writes_nothing(tmp_path: Path) -> None:
    tampered = tarball({"package/dist/lib.js": b"alert('evil')", "package/LICENSE": b"BSD"})
    with pytest.raises(AssetError, match="integrity mismatch"):
        install(PACKAGE, tmp_path, fetch=lambda _url: tampered)
    assert not (tmp_path / "lib").exists()


def test_a_missing_file_or_a_failed_download_is_an_asset_error(tmp_path: Path) -> None:
    partial = tarball({"package/dist/lib.js": b"x"})
    with pytest.raises(AssetError, match="LICENSE is not in the tarball"):
        install(NpmPackage("lib", "1.0.0", sri(partial), PACKAGE.files), tmp_path, fetch=lambda _u: partial)

    def offline(url: str) -> bytes:
        raise OSError("network is unreachable")

    with pytest.raises(AssetError, match="could not download"):
        install(PACKAGE, tmp_path, fetch=offline)
    with pytest.raises(AssetError, match="unsupported integrity"):
        check_integrity(DATA, "sha1-abc")
