"""Turn the markdown of a benchmark run into a PNG bar chart: server CPU per message, per scenario.

    python docs/gen_bench_chart.py BENCH.md [--output docs/img/bench.png]

BENCH.md is what ``python tests/benchmarks/run.py --output BENCH.md`` writes: one ``### NAME: what``
heading per scenario, then a table whose first column is the server. The chart has one panel
per scenario with a ``CPU µs/...`` column (lower is better), ignitia_sync's bars in orange,
the anchors' (picows, node-ws: see tests/benchmarks/run.py) in blue, the gevent floor's in
light grey; rows that report an error are left out. Needs matplotlib (``pip install -e '.[docs]'``).
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

OURS = "ignitia_sync"
#: run.py's anchors: not alternatives to ours, the cost of a fast Python server and of a Node one.
ANCHORS = {"picows", "node-ws"}


def parse(markdown: str) -> list[tuple[str, str, list[tuple[str, float]]]]:
    """``[(scenario title, unit column, [(server, value), ...]), ...]`` in the order of the file."""
    panels: list[tuple[str, str, list[tuple[str, float]]]] = []
    title = None
    header: list[str] | None = None
    rows: list[tuple[str, float]] = []
    column = -1

    def flush() -> None:
        if title is not None and header is not None and rows:
            panels.append((title, header[column], list(rows)))

    for line in markdown.splitlines():
        heading = re.match(r"#{2,4}\s+(.*)", line)
        if heading:
            flush()
            title, header, rows = heading.group(1).strip(), None, []
            continue
        if not line.startswith("|") or title is None:
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            column = next((i for i, cell in enumerate(cells) if cell.startswith("CPU µs")), -1)
            header = cells if column >= 0 else None
            if header is None:
                title = None  # a table without a CPU column: not charted
            continue
        if set(line) <= set("|-: "):
            continue
        if len(cells) <= column:
            continue  # "error: ..." rows span one cell
        try:
            rows.append((cells[0], float(cells[column].replace(",", ""))))
        except ValueError:
            continue
    flush()
    return panels


def chart(panels: list[tuple[str, str, list[tuple[str, float]]]], output: Path, subtitle: str = "") -> None:
    """Draw one horizontal bar panel per scenario into ``output``.

    Each panel has a linear axis; a bar more than four times the panel's median (gevent-websocket
    in E3: 1000 µs against 20-75) is cut at the edge, hatched, and labelled with its value.
    """
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 2
    lines = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(12, 3.0 * lines), squeeze=False)
    for ax, (title, unit, rows) in zip(axes.flat, panels, strict=False):  # axes may outnumber panels
        names = [name for name, _ in rows][::-1]
        values = [value for _, value in rows][::-1]
        limit = min(max(values), 4 * statistics.median(values)) * 1.18
        colours = ["#d9480f" if name.startswith(OURS) else "#1c7ed6" if name in ANCHORS
                   else "#adb5bd" if "floor" in name else "#495057" for name in names]
        bars = ax.barh(names, [min(value, limit) for value in values], color=colours)
        for bar, value in zip(bars, values, strict=True):
            if value > limit:
                bar.set_hatch("//")
                bar.set_edgecolor("white")
        ax.set_xlim(0, limit * 1.12)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel(f"server {unit} (lower is better)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.bar_label(bars, labels=[f"{value:g}" + (" →" if value > limit else "") for value in values],
                     fontsize=7, padding=2)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    heading = "Server CPU time per message (per handshake for I1); ignitia_sync in orange, anchors in blue"
    figure.suptitle(heading + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("markdown", type=Path, help="the output of tests/benchmarks/run.py --output")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "img" / "bench.png")
    args = parser.parse_args(argv)
    text = args.markdown.read_text(encoding="utf-8")
    panels = parse(text)
    if not panels:
        raise SystemExit(f"no benchmark table with a 'CPU µs' column in {args.markdown}")
    first = text.splitlines()[0] if text.startswith("Benchmarks") else ""
    chart(panels, args.output, subtitle=first.split(";")[0])
    print(f"wrote {args.output} ({len(panels)} scenarios)")


if __name__ == "__main__":
    main()
