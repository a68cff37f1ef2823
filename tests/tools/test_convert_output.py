"""tools/convert.py writes its json with the permissions any new file gets (0644 under the usual umask 022).

The command's ``main`` runs in the test's process (tests/commands_in_process.py) under the umask of the case, which
the test sets for the call and puts back: the kernel applies the process's umask when a file is created, as it would
in a process of the script started with that umask.
"""

from __future__ import annotations

import os
import stat

import cv2
import numpy as np
import pytest

from tests.commands_in_process import run_main


@pytest.fixture()
def yolo_set(tmp_path):
    """One 32x32 image with one box, as a YOLO dataset."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (tmp_path / "names.txt").write_text("thing\n")
    return tmp_path


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_the_json_gets_the_modes_the_umask_gives(yolo_set, umask, mode, capfd, monkeypatch):
    out = yolo_set / "out" / "val.json"
    previous = os.umask(umask)
    try:
        completed = run_main(
            "tools/convert.py", ["yolo2coco", "--images", "images", "--labels", "labels", "--classes", "names.txt",
                                 "--out", str(out)],
            cwd=yolo_set, capfd=capfd, monkeypatch=monkeypatch,
        )
    finally:
        os.umask(previous)
    assert completed.returncode == 0, completed.stderr
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert [path.name for path in out.parent.iterdir()] == ["val.json"]  # no temporary file left
