"""How long `retrosearch` takes to start, and which imports the time goes to.

Wall time of `retrosearch --help`, `retrosearch index --help` and `retrosearch index` up to the engine (a
small corpus sent to a port nothing listens on: everything indexing imports, no engine time) in fresh
processes, round-robin with repeats, against the interpreter alone (`python -c pass`, the floor no command
can beat); with `--baseline`, another installation's `retrosearch` is timed in the same rounds, interleaved,
and the ratio printed. Then `python -X importtime` of each command: the import time summed per top-level
package (self times, so the rows add up to the total) and the costliest imports by cumulative time.

    python bench/startup.py                     # this environment's retrosearch, 10 runs each
    python bench/startup.py --baseline /path/to/main-venv/bin/retrosearch --json startup.json
    python bench/startup.py --report startup.json

Point `--retrosearch` (or `--baseline`) at a plain `pip install .` environment to see what users without
extras get. Modules imported through importlib (the CLI loads a command's module that way) do not appear
in -X importtime's output themselves; what they import does, at the top level.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

SLOWEST_KEPT = 30  # imports recorded per command, costliest first
# Nothing listens on port 9: `index` fails at its first engine call, having imported all it needs.
UNREACHABLE_ENGINE = "http://127.0.0.1:9"


def commands(corpus: Path) -> dict[str, tuple[list[str], int]]:
    """Name → (retrosearch arguments, the exit status they end with)."""
    return {
        "--help": (["--help"], 0),
        "index --help": (["index", "--help"], 0),
        "index (to the engine)": (
            ["index", str(corpus), "--index", "startup", "--url", UNREACHABLE_ENGINE],
            1,
        ),
    }


def interpreter_of(script: Path) -> str:
    """The Python a console script runs with (its shebang), so importtime sees the same environment."""
    first_line = script.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    return first_line[2:].strip() if first_line.startswith("#!") else sys.executable


def wall_times(
    runs: dict[tuple[str, str], tuple[list[str], int]], repeats: int
) -> dict[tuple[str, str], list[float]]:
    """Seconds per run of each (installation, command), all of them in turn in every round."""
    for (label, name), (command, status) in runs.items():  # one untimed run each: the file cache, .pyc files
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != status:
            raise SystemExit(
                f"{label}: `{name}` ended {completed.returncode}, not {status}:\n{completed.stderr[-1500:]}"
            )
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, (command, _status) in runs.items():
            started = time.perf_counter()
            subprocess.run(command, capture_output=True)
            times[key].append(time.perf_counter() - started)
    return times


def import_profile(python: str, script: Path, arguments: list[str]) -> list[tuple[int, int, int, str]]:
    """(self µs, cumulative µs, depth, module) per import, from -X importtime."""
    completed = subprocess.run(
        [python, "-X", "importtime", str(script), *arguments], capture_output=True, text=True
    )
    rows = []
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((int(own), int(cumulative), depth, name.strip()))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--retrosearch",
        type=Path,
        default=Path(sys.executable).with_name("retrosearch"),
        help="the console script to time (default: this environment's)",
    )
    parser.add_argument(
        "--baseline", type=Path, help="another installation's console script, timed alongside"
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--top", type=int, default=12, help="rows per import table")
    parser.add_argument("--json", type=Path, help="write the measurements to this file")
    parser.add_argument("--report", type=Path, help="print the tables of a recorded run and exit")
    args = parser.parse_args(argv)

    if args.report:
        print_report(json.loads(args.report.read_text()), args.top)
        return 0
    scripts = {"current": args.retrosearch, **({"baseline": args.baseline} if args.baseline else {})}
    with tempfile.TemporaryDirectory() as scratch:
        corpus = Path(scratch) / "corpus.jsonl"
        corpus.write_text('{"id": "1", "title": "Leaves", "text": "Why leaves change colour."}\n')
        record = measure(scripts, commands(corpus), args.repeats)
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    print_report(record, args.top)
    if args.json:
        print(f"\nmeasurements written to {args.json}")
    return 0


def measure(
    scripts: dict[str, Path], named: dict[str, tuple[list[str], int]], repeats: int
) -> dict[str, Any]:
    runs: dict[tuple[str, str], tuple[list[str], int]] = {}
    for label, script in scripts.items():
        runs[(label, "python -c pass")] = ([interpreter_of(script), "-c", "pass"], 0)
        for name, (arguments, status) in named.items():
            runs[(label, f"retrosearch {name}")] = ([str(script), *arguments], status)
    times = wall_times(runs, repeats)
    record: dict[str, Any] = {"repeats": repeats, "installations": {}}
    for label, script in scripts.items():
        imports = {}
        for name, (arguments, _status) in named.items():
            rows = import_profile(interpreter_of(script), script, arguments)
            by_package: dict[str, int] = defaultdict(int)
            for own, _, _, module in rows:
                by_package[module.split(".")[0]] += own
            # The costliest imports near the top of the tree (the command modules' own lines aside: what
            # they import is listed instead), with the import that pulled each in.
            shallow = [row for row in rows if row[2] <= 3 and not row[3].startswith("retrostar_search.cli")]
            slowest = sorted(shallow, key=lambda row: -row[1])[:SLOWEST_KEPT]
            imports[name] = {
                "total_us": sum(own for own, _, _, _ in rows),
                "module_count": len(rows),
                "by_package_us": dict(by_package),
                "slowest": [
                    (module, cumulative, _parent(rows, module, depth))
                    for _, cumulative, depth, module in slowest
                ],
            }
        record["installations"][label] = {
            "retrosearch": str(script),
            "wall_seconds": {name: values for (owner, name), values in times.items() if owner == label},
            "imports": imports,
        }
    return record


def print_report(record: dict[str, Any], top: int) -> None:
    installations = record["installations"]
    current = installations["current"]
    baseline = installations.get("baseline")
    print(f"Start-up, {record['repeats']} runs each, round-robin: median (range), seconds")
    print(
        f"current: {current['retrosearch']}" + (f"; baseline: {baseline['retrosearch']}" if baseline else "")
    )
    header = "| command | current | over the interpreter alone |"
    if baseline:
        header += " baseline | current / baseline |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    floor = statistics.median(current["wall_seconds"]["python -c pass"])
    for name, values in current["wall_seconds"].items():
        median = statistics.median(values)
        row = f"| `{name}` | {median:.3f} ({min(values):.3f}-{max(values):.3f}) | {median / floor:.1f}x |"
        if baseline:
            before = baseline["wall_seconds"][name]
            row += f" {statistics.median(before):.3f} ({min(before):.3f}-{max(before):.3f}) |"
            row += f" {median / statistics.median(before):.2f} |"
        print(row)

    for name, profile in current["imports"].items():
        total = profile["total_us"]
        summary = (
            f"\n`retrosearch {name}`: {total / 1000:.0f} ms of imports, {profile['module_count']} modules"
        )
        if baseline:
            before = baseline["imports"][name]
            summary += f" (baseline: {before['total_us'] / 1000:.0f} ms, {before['module_count']} modules)"
        print(summary)
        print("| package (self times summed) | ms | share |")
        print("|---|---|---|")
        for package, own in sorted(profile["by_package_us"].items(), key=lambda item: -item[1])[:top]:
            print(f"| {package} | {own / 1000:.1f} | {own / total:.0%} |")
        print("| import (cumulative, nesting depth <= 3) | ms | imported within |")
        print("|---|---|---|")
        for module, cumulative, parent in profile["slowest"][:top]:
            print(f"| {module} | {cumulative / 1000:.1f} | {parent} |")


def _parent(rows: list[tuple[int, int, int, str]], module: str, depth: int) -> str:
    """The import that pulled `module` in: importtime prints children before their parent, one level up."""
    for index, row in enumerate(rows):
        if row[3] == module:
            for later in rows[index + 1 :]:
                if later[2] == depth - 1:
                    return later[3]
            break
    return "(top level)"


if __name__ == "__main__":
    sys.exit(main())
