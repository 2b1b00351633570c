"""The gate of ``tox -e mutation``: after ``mutmut run``, fail on any mutant that survived (or
had no test) and is not listed in ``tests/mutation/equivalent.txt``; print the score.

Run from the repository root: ``python tests/mutation/check.py`` (reads ``mutants/**/*.meta``).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

#: mutmut 3's exit codes of a mutant's test run (``mutmut.stats.status_by_exit_code``).
KILLED = {1, 3, 36, 37, -24, 24, 152, 255, -11, -9}  # a failing test, a timeout, a crash
SURVIVED = {0: "survived", 33: "no tests", 5: "no tests"}


def main() -> int:
    here = Path(__file__).parent
    listed: dict[str, str] = {}  # name: why
    for line in (here / "equivalent.txt").read_text(encoding="utf-8").splitlines():
        name, _, why = (part.strip() for part in line.partition("#"))
        if name:
            listed[name] = why
    gaps = {name for name, why in listed.items() if why.startswith("known gap")}
    counts: Counter[str] = Counter()
    unexpected: list[str] = []
    metas = sorted(Path("mutants").glob("**/*.py.meta"))
    if not metas:
        print("no mutants/**/*.meta: run `mutmut run` first", file=sys.stderr)
        return 2
    for meta in metas:
        for name, code in json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"].items():
            if code in SURVIVED:
                counts["gap" if name in gaps else "equivalent" if name in listed else "unexpected"] += 1
                if name not in listed:
                    unexpected.append(f"{name}: {SURVIVED[code]}")
            elif code in KILLED:
                counts["killed"] += 1
            else:  # not checked, skipped, suspicious, interrupted
                counts["not run"] += 1
                unexpected.append(f"{name}: not checked (exit code {code})")
    total = sum(counts.values())
    scored = total - counts["equivalent"]
    print(
        f"{total} mutants: {counts['killed']} killed (timeouts included), {counts['equivalent']} equivalent "
        f"and {counts['gap']} known gaps (equivalent.txt), {counts['unexpected']} other survivors, "
        f"{counts['not run']} not checked; score {counts['killed'] / scored:.2%} "
        f"({counts['killed']} of the {scored} non-equivalent mutants killed)"
    )
    for line in unexpected:
        print("not killed and not listed:", line)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
