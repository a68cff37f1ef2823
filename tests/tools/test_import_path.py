"""A tool run from a checkout imports the checkout's package, not another copy installed or on PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_eval_coco_imports_the_checkouts_package(tmp_path):
    decoy = tmp_path / "elsewhere" / "ssdlite"  # another copy of the package, ahead of site-packages
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text('raise ImportError("imported the copy on PYTHONPATH, not the checkout")\n')
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "eval_coco.py"), "--help"], cwd=tmp_path, capture_output=True,
        text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(decoy.parent)},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "usage: eval_coco.py" in completed.stdout
