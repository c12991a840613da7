"""Headless Chromium for checking report.html in a real browser: the DOM after its scripts ran, and
a screenshot. Offline: a fresh empty profile and every background network feature off.

    apt-get install -y chromium   # Debian / Ubuntu; or set CHROMIUM=/path/to/chrome
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from common.errors import BenchmarkError

INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install -y chromium) or point CHROMIUM at a Chrome/Chromium binary"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--hide-scrollbars", "--mute-audio")


class BrowserError(BenchmarkError, RuntimeError):
    """No Chromium, or Chromium failed; the message says which and how to fix it."""


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM, else the first of ``CANDIDATES`` on PATH; None if none."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if os.path.exists(explicit) else shutil.which(explicit)
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


def _run(arguments: list[str], url: str, timeout: float) -> subprocess.CompletedProcess:
    binary = find_chromium()
    if binary is None:
        raise BrowserError(f"no Chromium found; {INSTALL_HINT}.")
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        command = [binary, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *arguments, url]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise BrowserError(f"Chromium did not finish within {timeout:g} s on {url}.") from error
    if done.returncode != 0:
        raise BrowserError(f"Chromium exited with {done.returncode} on {url}: {done.stderr.strip()[-800:]}")
    return done


def file_url(path: str, fragment: str = "") -> str:
    return "file://" + os.path.abspath(path) + (f"#{fragment}" if fragment else "")


def dump_dom(path: str, fragment: str = "", timeout: float = 120) -> str:
    """The page's DOM (HTML) after its scripts ran (``--dump-dom``)."""
    return _run(["--dump-dom"], file_url(path, fragment), timeout).stdout


def screenshot(path: str, png: str, width: int = 1400, height: int = 2400, timeout: float = 120) -> str:
    """A PNG screenshot of the page's top ``width`` x ``height`` pixels; returns ``png``."""
    png = os.path.abspath(png)
    os.makedirs(os.path.dirname(png), exist_ok=True)
    if os.path.exists(png):
        os.remove(png)
    _run([f"--screenshot={png}", f"--window-size={width},{height}"], file_url(path), timeout)
    if not os.path.exists(png):
        raise BrowserError(f"Chromium wrote no screenshot to {png}.")
    return png
