"""`make test`: the test suite as one job per package, each reporting on its own.

    python scripts/test_jobs.py                 # every job, one after another, then a summary table
    python scripts/test_jobs.py vision nlg      # some jobs (what each public-CI matrix entry runs)

A job is a pytest run over one folder of tests/ (``-m "not slow and not gpu"``, ``-n $PYTEST_WORKERS``),
with its own JUnit XML in ``.ci-reports/``. A failing job does not stop the others; the exit status is 1
if any job failed or collected no tests (pytest's 5), 0 otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOBS = ["core", "vision", "detection", "video", "pointcloud", "nlg", "matrix", "distributed"]


def main(argv: list[str]) -> int:
    jobs = argv or JOBS
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        sys.stderr.write(f"error: unknown test job {unknown[0]!r}; choose from {', '.join(JOBS)}\n")
        return 2
    workers = os.environ.get("PYTEST_WORKERS", "2")
    marker = os.environ.get("PYTEST_MARKERS", "not slow and not gpu")
    reports = ROOT / ".ci-reports"
    reports.mkdir(exist_ok=True)
    results = []
    for job in jobs:
        cmd = [sys.executable, "-m", "pytest", "-q", "-n", workers, "-m", marker, f"tests/{job}",
               f"--junitxml={reports / (job + '.xml')}"]
        print(f"\n=== job {job}: {' '.join(cmd[2:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        results.append((job, rc, time.perf_counter() - t0))
    print("\n| job | result | seconds |\n|---|---|---:|")
    for job, rc, dt in results:
        status = "passed" if rc == 0 else ("no tests collected" if rc == 5 else f"FAILED (exit {rc})")
        print(f"| {job} | {status} | {dt:.0f} |")
    return 0 if all(rc == 0 for _, rc, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
