"""benchmarks/gpu_check.sh runs end to end on the CPU (--cpu, tiny sizes) and prints its summary block.

On a GPU it is run by a user; here we check that every step works and that the summary says what it measured.
On the CPU the prefix tree equals from-scratch decoding (tests/test_model_exact.py's bounds). No timing is asserted.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.model, pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")]
ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_runs_on_the_cpu(tmp_path, gemma_path, smollm2_path):
    # gemma_path assembles the default model into the test cache (ICM_LITE_CACHE), which the script inherits
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "--n", "6", "--demo-n", "4",
                          "--iterations", "1", "--fan-queries", "6", "--out", str(tmp_path / "check")],
                         env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert lines[0] == "== icm_lite gpu_check summary =="
    by = {line.split(":")[0]: line for line in lines[1:]}
    assert by["mode"] == "mode: cpu (n_gpu_layers 0)"
    assert "llama-cpp-python" in by["build"] and "gpu offload" in by["build"]
    assert by["devices"].startswith("devices: ") and "CPU" in by["devices"]
    for name, bound in (("smollm2", 0.01), ("gemma-3-270m", 0.05)):
        got = re.search(r"max \|tree - scratch\| = ([0-9.]+) nats \(n=6, (\d+) contexts", by[f"exactness {name}"])
        assert got and float(got[1]) <= bound and int(got[2]) > 6, by[f"exactness {name}"]
        ratio = re.search(r"tokens ([0-9.]+)x", by[f"tree vs naive {name}"])
        assert ratio and float(ratio[1]) > 1.0  # the tree reuses prefixes even at n=6
    assert re.match(r"fan gemma-3-270m: 6 queries after \d+ prefix tokens, one decode for up to 16 [0-9.]+x faster",
                    by["fan gemma-3-270m"]), by["fan gemma-3-270m"]
    assert re.match(r"demo: labeled \d+/4, agreement [0-9.]+, [\d,]+ tokens", by["demo"]), by["demo"]
    assert (tmp_path / "check" / "summary.txt").read_text().strip() == res.stdout.strip()
