"""A tool run from a checkout imports the checkout's package.

The tools no longer put the checkout on ``sys.path`` themselves: the project's environment has the checkout
installed in editable mode (``make`` runs ``pip install -e``), so ``ssdlite`` resolves to it from any working folder,
for ``python tools/*.py`` as for the ``ssdlite-*`` commands. (The earlier form of this test also put a copy of the
package on PYTHONPATH and expected the checkout to win; without a sys.path line in the tools, PYTHONPATH wins, as
for any installed Python program, so that premise no longer holds.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_eval_coco_imports_the_checkouts_package(tmp_path):
    decoy = tmp_path / "ssdlite"  # a copy in the working folder is not what a tool imports
    decoy.mkdir()
    (decoy / "__init__.py").write_text('raise ImportError("imported the copy in the working folder")\n')
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "eval_coco.py"), "--help"], cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "usage: eval_coco.py" in completed.stdout
    where = subprocess.run(
        [sys.executable, "-I", "-c", "import ssdlite.commands.eval_coco as command; print(command.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    assert Path(where.stdout.strip()) == REPO_ROOT / "ssdlite" / "commands" / "eval_coco.py"
