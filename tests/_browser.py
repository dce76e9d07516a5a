"""Headless Debian chromium for the browser tests of the report and the documentation."""

import shutil
import subprocess

import pytest

#: The laptop screen the pages must fit.
WIDTH, HEIGHT = 1280, 900
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium found on PATH (chromium, chromium-browser or google-chrome); "
    "install Debian's with `apt-get install chromium`",
)


def run_chromium(*args, profile, timeout=120):
    """Run headless chromium at ``WIDTH x HEIGHT`` with a fresh ``profile`` directory."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
