"""CPU time of the scan itself, without process start-up: assay's ``scan_model`` against picklescan's
``scan_file_path`` on the same file, in one process (median of ``--repeats`` after a warm-up).

    python benchmarks/scan_inprocess.py /tmp/assay-scan-bench/torch-1GiB.pt --repeats 30

Build the files with ``benchmarks/scan_speed.py`` first. picklescan is not a dependency: ``pip install picklescan``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def measure(fn: Callable[[], object], repeats: int) -> float:
    """Median CPU seconds of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    from assay.model.ref import resolve
    from assay.scan import scan_model

    rows = [("assay", measure(lambda: scan_model(resolve(args.file)), args.repeats))]
    try:
        from picklescan.scanner import scan_file_path
    except ImportError:
        print("picklescan: not installed (pip install picklescan); not measured")
    else:
        rows.append(("picklescan", measure(lambda: scan_file_path(args.file), args.repeats)))
    for tool, sec in rows:
        ratio = "" if tool == "assay" else f"  ({sec / rows[0][1]:.2f}x of assay's time)"
        print(f"{tool:11} {sec * 1000:8.2f} ms CPU{ratio}")


if __name__ == "__main__":
    main()
