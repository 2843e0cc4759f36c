"""Fuzz the pvttrace command line and its snapshot/trace files (issue 9); the code lives in tests/fuzz/.

Usage:
    PYTHONPATH=$PWD python benchmarks/fuzz.py --cli 10000 --files 10000 [--seed 0] [--timeout 60]

Prints, per campaign, the number of cases, their exit codes, the time taken and every distinct failure
(an escaped exception, an exit code other than 0/1/2, a stderr line that is not one-line ``error:``/
``warning:``, or a file changed without --update); exits 1 when there was any. docs/reliability.md
records the last full run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz.campaign import main

if __name__ == "__main__":
    sys.exit(main())
