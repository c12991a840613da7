#!/usr/bin/env python
"""Screenshot a results folder's report.html in headless Chromium (for the README), after checking
that its tables and figures rendered.

    python run_benchmark.py --dataset digits --methods LSH ITQ SDH CSQ 'LTHNet(k=3)' --if 1 50 100 --bits 16 \\
        --set n_epochs=2 --no-progress --results-dir /tmp/f_run
    python benchmarks/report_screenshot.py --results-dir /tmp/f_run --out docs/report_screenshot.png

Needs Chromium (Debian/Ubuntu: apt-get install -y chromium; or CHROMIUM=/path/to/chrome).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", required=True, help="a results folder with report.html (any finished run)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "report_screenshot.png"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1800)
    args = parser.parse_args(argv)

    from benchmark import browser
    from benchmark.html_report import HTML_NAME

    page = os.path.join(args.results_dir, HTML_NAME)
    if not os.path.exists(page):
        print(f"error: {page} does not exist; run the benchmark into {args.results_dir} first.", file=sys.stderr)
        return 2
    try:
        dom = browser.dump_dom(page)
        found = re.search(r'data-rendered="([^"]+)"', dom)
        rendered = json.loads(found.group(1).replace("&quot;", '"')) if found else {}
        if not rendered.get("tables") or rendered.get("images_loaded") != rendered.get("images"):
            print(f"error: the page did not render completely: {rendered or 'its script did not run'}", file=sys.stderr)
            return 1
        browser.screenshot(page, args.out, args.width, args.height)
    except browser.BrowserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"rendered {rendered['tables']} tables and {rendered['images']} figures; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
