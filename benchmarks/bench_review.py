"""How well the review margin finds wrong labels: accuracy of the least sure tenth of a run's labels vs the rest.

For each finished run directory (e.g. bench_quality's runs, kept under /tmp/bench-quality-*), rank its labels as
`icm-lite review` does (review.doubtful: flagged first, then by margin) and compare the least sure decile's
agreement with gold against the other nine tenths'. Gold labels are read here for this evaluation only.

  python benchmarks/bench_review.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.export import load_run  # noqa: E402
from icm_lite.review import doubtful  # noqa: E402
from icm_lite.rundir import RunDir  # noqa: E402


def main(paths: list[str]) -> None:
    print("| run | labels | wrong | least sure tenth: agreement | the rest: agreement | wrong ones in the least sure tenth |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        run = load_run(path)
        gold = run.dataset.gold
        rows = [r for r in doubtful(run, RunDir(path).events()) if gold[r.index] is not None]
        k = max(1, len(rows) // 10)
        right = [r.label == gold[r.index] for r in rows]
        low, rest = right[:k], right[k:]
        wrong = len(right) - sum(right)
        pct = lambda xs: f"{sum(xs) / len(xs):.0%}" if xs else "—"  # noqa: E731
        print(f"| {Path(path).name} | {len(rows)} | {wrong} | {pct(low)} of {len(low)} | {pct(rest)} of {len(rest)} | "
              f"{len(low) - sum(low)} of {wrong} |")


if __name__ == "__main__":
    main(sys.argv[1:])
