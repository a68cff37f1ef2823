"""Headless Chromium for the tests of the pages we write or serve (the web view of ``ssdlite-detect``, the HTML
galleries): ``--screenshot`` to see what is drawn, ``--dump-dom`` to read what the page's script left.

Chromium is found on the PATH (``.ci/run`` installs it); the tests that need it are marked :data:`needs_chromium`
and skip without it.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="needs chromium (apt-get install chromium)")


def chromium(*args: str, user_data_dir: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    """Runs headless Chromium with ``args`` (a flag such as ``--dump-dom`` and a URL) in an 800x600 window, with a
    profile of its own in ``user_data_dir`` and no network of its own (no updates, sync or QUIC)."""
    command = [
        shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={user_data_dir}", "--window-size=800,600", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def page_elements(page: str, tag: str | None = None) -> list[dict[str, str | None]]:
    """The attributes (unescaped, as the browser reads them) of every element of ``page``, or of its ``tag``
    elements, in document order; an element's ``"tag"`` key names it."""
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return [{**attributes, "tag": name} for name, attributes in parser.found if tag is None or name == tag]
