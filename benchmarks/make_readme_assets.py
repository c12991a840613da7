#!/usr/bin/env python
"""Make the README's figure and table from the offline digits demo.

Runs (or, when its cells are stored already, only reads) the digits demo into
``results/readme-demo``: the main grid (every method, IF 1/50/100, 32 bits; deep methods on frozen features
with the trainer's default ``settings="auto"``, i.e. the validated feature-mode preset) and the
convergence experiment (Fig. 7). Pointed at the store of the README's main command
(``--results-dir results/runs``) it only reads the cells that command computed. Copies Figure 2 and Figure 7 to ``docs/`` and writes the MAP
table to ``docs/table_digits.md`` and into README.md between the ``readme-assets`` markers.

    python benchmarks/make_readme_assets.py [--results-dir results/readme-demo] [--jobs 2]
    python benchmarks/make_readme_assets.py --methods LSH PCAH ITQ SDH SCDH --no-convergence  # minutes
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

START, END = "<!-- readme-assets:start -->", "<!-- readme-assets:end -->"
DEMO = ["--dataset", "digits", "--if", "1", "50", "100", "--bits", "32"]
CONVERGENCE = ["--experiment", "convergence", "--dataset", "digits"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default=os.path.join(ROOT, "results", "readme-demo"))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=["all"], help="methods of the demo table (default all)")
    parser.add_argument("--no-convergence", action="store_true", help="skip Fig. 7 (LTHNet training runs)")
    args = parser.parse_args(argv)

    from benchmark.cli import main as run
    common = ["--results-dir", args.results_dir, "--jobs", str(args.jobs)]
    demo = DEMO + ["--methods", *args.methods]
    commands = [demo] + ([] if args.no_convergence else [CONVERGENCE])
    for command in commands:
        code = run(command + common)
        if code != 0:
            print(f"the demo run {' '.join(command)} failed (exit {code})", file=sys.stderr)
            return code

    docs = os.path.join(ROOT, "docs")
    os.makedirs(docs, exist_ok=True)
    figures = {"figure2_digits.png": os.path.join(args.results_dir, "figures", "figure2_digits.png")}
    if not args.no_convergence:
        figures["figure7_digits.png"] = glob.glob(os.path.join(args.results_dir, "figures", "figure7_*digits*.png"))[0]
    for name, source in figures.items():
        shutil.copyfile(source, os.path.join(docs, name))
    table_path = os.path.join(args.results_dir, "tables", "map_digits_features_tie_aware.md")
    with open(table_path, encoding="utf-8") as handle:
        table = handle.read().strip()
    with open(os.path.join(docs, "table_digits.md"), "w", encoding="utf-8") as handle:
        handle.write(table + "\n")

    command = "python benchmarks/make_readme_assets.py" + (
        "" if args.methods == ["all"] else " --methods " + " ".join(args.methods)) + (
        " --no-convergence" if args.no_convergence else "") + (
        "" if os.path.abspath(args.results_dir) == os.path.join(ROOT, "results", "readme-demo")
        else " --results-dir <the main command's results folder>")
    lines = [START, f"Produced by `{command}` (the digits demo, offline, the bits its store holds; deep methods "
             "in features mode with their default settings):", "", table, "",
             "![Fig. 2 on digits: class sizes of the long-tail splits](docs/figure2_digits.png)"]
    if not args.no_convergence:
        lines.append("![Fig. 7 on digits: LTHNet (k=3) normalised training loss per epoch](docs/figure7_digits.png)")
    block = "\n".join(lines + [END])
    readme_path = os.path.join(ROOT, "README.md")
    with open(readme_path, encoding="utf-8") as handle:
        readme = handle.read()
    if START in readme and END in readme:
        before, rest = readme.split(START, 1)
        readme = before + block + rest.split(END, 1)[1]
    else:
        readme = readme.rstrip("\n") + "\n\n" + block + "\n"
    with open(readme_path, "w", encoding="utf-8") as handle:
        handle.write(readme)
    print(f"wrote {', '.join('docs/' + n for n in figures)}, docs/table_digits.md and the README block")
    return 0


if __name__ == "__main__":
    sys.exit(main())
