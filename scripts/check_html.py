"""Load HTML pages in headless Chromium: fail on any console error, on any request that leaves
the page's own files, and on any SVG text drawn outside its picture; save a screenshot.

Run:  python scripts/check_html.py resprobe-report/report.html [screenshot.png]
      python scripts/check_html.py --all site      # every page under a folder (the docs site)

Needs a Chromium (Debian: apt-get install chromium). Exit code 0 when every page loaded cleanly
and its screenshot was written; 1 otherwise, with the errors printed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")

# Runs after the page has loaded: every <text> of every SVG must lie inside that SVG's box.
_PROBE = """<script>window.addEventListener('load',function(){setTimeout(function(){
document.querySelectorAll('svg').forEach(function(s){var r=s.getBoundingClientRect();
if(!r.width){return;}s.querySelectorAll('text').forEach(function(t){var b=t.getBoundingClientRect();
if(b.width&&(b.left<r.left-1||b.right>r.right+1||b.top<r.top-1||b.bottom>r.bottom+1)){
console.error('Error: text outside its SVG: '+t.textContent.slice(0,60));}});});},50);});</script>"""
_EXTERNAL = re.compile(r"""<(?:script|img|link|iframe|source|audio|video)\b[^>]*\b(?:src|href)=["']"""
                       r"""(?:https?:)?//""", re.I)


def browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def check(page: Path, screenshot: Path, timeout: float = 120.0) -> list[str]:
    """Problems of ``page`` in headless Chromium (empty: none); writes ``screenshot``."""
    exe = browser()
    if exe is None:
        raise FileNotFoundError("no Chromium found: apt-get install chromium")
    text = page.read_text(encoding="utf-8")
    errors = [f"{page}: loads something from the network: {m.group(0)[:80]}"
              for m in _EXTERNAL.finditer(text)]
    probe = page.with_name(f".check-{page.name}")  # beside the page: its relative links still work
    probe.write_text(text.replace("</body>", _PROBE + "</body>") if "</body>" in text else text + _PROBE,
                     encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run(
                [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                 "--virtual-time-budget=2000", "--window-size=1280,1600", f"--screenshot={screenshot}",
                 probe.resolve().as_uri()],
                capture_output=True, text=True, timeout=timeout, check=False,
            )
    finally:
        probe.unlink(missing_ok=True)
    lines = (done.stderr or "").splitlines()
    errors += [f"{page}: {line}" for line in lines if "CONSOLE" in line and (
        "Error" in line or "Uncaught" in line or "Failed to load" in line or "net::ERR" in line)]
    if done.returncode != 0 or not screenshot.exists():
        errors.append(f"{page}: chromium exited with {done.returncode}: {' '.join(lines[-3:])}")
    return errors


def main() -> None:
    if sys.argv[1:2] == ["--all"]:
        # 404.html is served by a web server for any missing path, so it links from the site's root
        pages = sorted(p for p in Path(sys.argv[2]).rglob("*.html")
                       if not p.name.startswith(".check-") and p.name != "404.html")
        with tempfile.TemporaryDirectory() as shots:
            errors = [e for k, p in enumerate(pages) for e in check(p, Path(shots) / f"{k}.png")]
        for e in errors:
            print(e)
        verdict = "FAILED" if errors else "ok"
        print(f"{verdict}: {len(pages)} page(s) under {sys.argv[2]} in headless Chromium")
        sys.exit(1 if errors else 0)
    page = Path(sys.argv[1])
    shot = Path(sys.argv[2]) if len(sys.argv) > 2 else page.with_suffix(".png")
    errors = check(page, shot)
    for e in errors:
        print(e)
    print(f"{'FAILED' if errors else 'ok'}: {page} in headless Chromium; screenshot {shot}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
