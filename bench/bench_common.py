"""Pieces the bench reporters share (persist_report.py, repl_report.py)."""

import csv
import statistics
import subprocess


def sh(*cmd, cwd=None):
    """A command's stdout, stripped; "" when it cannot run."""
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def read_rb(path):
    """rps, p50, p99 (ms) of the SET row of redis-benchmark --csv."""
    with open(path) as f:
        for row in csv.DictReader(f):
            if row["test"].upper() == "SET":
                return float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"])
    raise SystemExit(f"{path}: no SET row (did redis-benchmark fail?)")


def med(xs):
    """Median of the figures present (None: missing), NaN when none."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def parse_info(text):
    """INFO text -> {field: value} (section headers and blank lines skipped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out
