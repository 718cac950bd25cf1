"""What a person's corrections buy: pin the least sure tenth of a finished run's labels to their gold labels (as a
person who checked them would) and label the data again with --pin; agreement with gold on the other nine tenths,
before and after.

For each RUN_DIR (a finished run of `icm-lite label`, e.g. bench_quality's under /tmp/bench-quality-*): the least
sure tenth is what `icm-lite review` lists first; the new run has the run's own data, task, model and options,
and the pins. Gold labels are read here to play the person and to evaluate; the search never sees them.

  python benchmarks/bench_pin.py RUN_DIR [RUN_DIR ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icm_lite.config import RunConfig  # noqa: E402
from icm_lite.export import load_run  # noqa: E402
from icm_lite.review import doubtful  # noqa: E402
from icm_lite.rundir import RunDir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default=None, help="where the new runs go (default: a temporary folder)")
    args = ap.parse_args()

    from icm_lite import run as runmod

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-pin-"))
    out.mkdir(parents=True, exist_ok=True)
    print("| run | pinned (least sure tenth) | wrong among them | agreement on the rest: before | after | tokens after |")
    print("|---|---|---|---|---|---|")
    for path in args.runs:
        old = load_run(path)
        gold = old.dataset.gold
        rows = doubtful(old, RunDir(path).events())
        worst = rows[: max(1, len(rows) // 10)]
        pins_file = out / f"{Path(path).name}.pins.csv"
        with open(pins_file, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "label"])
            w.writerows([r.id, "true" if gold[r.index] else "false"] for r in worst)
        pinned = {r.index for r in worst}
        rest = [i for i in range(len(gold)) if i not in pinned and gold[i] is not None]
        before = sum(old.labels[i] == gold[i] for i in rest) / len(rest)
        cfg = old.config
        pins = tuple(sorted((r.id, bool(gold[r.index])) for r in worst))
        fresh = RunConfig(data=cfg.data, task=cfg.task, model=cfg.model_path, model_options=cfg.model_options,
                          search=cfg.search, batching=cfg.batching, pins=pins)
        job = runmod.start(fresh, out / Path(path).name, force=True)
        summary = job.run()
        new = load_run(out / Path(path).name)
        after = sum(new.labels[i] == gold[i] for i in rest) / len(rest)
        wrong = sum(old.labels[r.index] != gold[r.index] for r in worst)
        print(f"| {Path(path).name} | {len(worst)} | {wrong} | {before:.0%} | {after:.0%} | "
              f"{summary['tokens_evaluated']:,} |", flush=True)


if __name__ == "__main__":
    main()
