"""Load a report.html in headless Chromium: fail on any console error, save a screenshot.

Run:  python scripts/check_html.py resprobe-report/report.html [screenshot.png]

Needs a Chromium (Debian: apt-get install chromium). Exit code 0 when the page loaded without
console errors and the screenshot was written; 1 otherwise, with the errors printed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def check(page: Path, screenshot: Path, timeout: float = 120.0) -> list[str]:
    """Console errors of ``page`` in headless Chromium (empty: none); writes ``screenshot``."""
    exe = browser()
    if exe is None:
        raise FileNotFoundError("no Chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1280,1600",
                f"--screenshot={screenshot}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    lines = (done.stderr or "").splitlines()
    errors = [line for line in lines if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
    if done.returncode != 0 or not screenshot.exists():
        errors.append(f"chromium exited with {done.returncode}: {' '.join(lines[-3:])}")
    return errors


def main() -> None:
    page = Path(sys.argv[1])
    shot = Path(sys.argv[2]) if len(sys.argv) > 2 else page.with_suffix(".png")
    errors = check(page, shot)
    for e in errors:
        print(e)
    print(f"{'FAILED' if errors else 'ok'}: {page} in headless Chromium; screenshot {shot}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
