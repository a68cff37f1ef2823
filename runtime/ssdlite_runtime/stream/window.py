"""The OpenCV window a stream is shown in, and the probe for whether this OpenCV can open one here."""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np


def opencv_gui_available() -> bool:
    """True where the installed OpenCV can open a window here (GUI backend built in, and a display to use)."""
    gui_lines = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if not gui_lines or gui_lines[0].split(":", 1)[1].strip().upper() == "NONE":
        return False
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False  # a GTK/Qt build without a display would abort the process in namedWindow
    try:
        cv2.namedWindow("ssdlite-gui-probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("ssdlite-gui-probe")
    except cv2.error:
        return False
    return True


class OpenCVWindow:
    """An OpenCV window; ``show`` returns False once the user pressed q / Esc or closed the window."""

    def __init__(self, title: str = "ssdlite") -> None:
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, image_rgb: np.ndarray) -> bool:
        cv2.imshow(self.title, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)
