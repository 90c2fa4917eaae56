"""Turning case records into table rows: the terminal table printed while the suite runs, and a
Markdown table of a saved JSON file (``python -m bench.report bench/results/latest.json``)."""
from __future__ import annotations

import json
import sys

COLUMNS = ("case", "lamina", "pytorch", "numpy", "L/T", "%peak L/T", "shape; notes")
WIDTHS = (32, 13, 13, 10, 6, 10, 0)
_RATE = {"images": "img/s", "tokens": "tok/s"}


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _value(record, impl):
    if f"{impl}_s" not in record:
        return ""
    if record["unit"] == "time":
        return fmt_time(record[f"{impl}_s"])
    unit = record["unit"]
    return f"{record[f'{impl}_{unit}_per_s']:,.0f} {_RATE.get(unit, '/s')}"


def row(record: dict) -> list[str]:
    if "skipped" in record:
        return [record["name"], "-", "-", "", "", "", "skipped: " + record["skipped"]]
    peak = ""
    if record.get("lamina_pct_peak") is not None:
        peak = f"{record['lamina_pct_peak']:.0f}/{record['pytorch_pct_peak']:.0f}"
    notes = "; ".join(s for s in (record.get("shape"), record.get("note")) if s)
    return [record["name"], _value(record, "lamina"), _value(record, "pytorch"), _value(record, "raw"),
            f"{record['ratio']:.2f}", peak, notes]


def terminal_line(cells) -> str:
    return "  ".join(c.ljust(w) if w else c for c, w in zip(cells, WIDTHS)).rstrip()


def header(raw_name: str = "numpy") -> list[str]:
    return [raw_name if c == "numpy" else c for c in COLUMNS]


def markdown(results: dict) -> str:
    raw_name = results.get("machine", {}).get("raw_library", "numpy")
    lines = ["| " + " | ".join(header(raw_name)) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results["cases"]]
    return "\n".join(lines)


def main(argv=None):
    paths = (argv if argv is not None else sys.argv[1:]) or ["bench/results/latest.json"]
    for path in paths:
        with open(path) as f:
            print(markdown(json.load(f)))


if __name__ == "__main__":
    main()
