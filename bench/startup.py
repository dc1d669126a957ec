"""How long `retrosearch` takes to start, and which imports the time goes to.

Wall time of `retrosearch --help` and `retrosearch index --help` (fresh processes, round-robin, repeats)
against the interpreter alone (`python -c pass`, the floor no command can beat), then `python -X importtime`
of each command: the import time summed per top-level package (self times, so the rows add up to the total)
and the costliest imports by cumulative time.

    python bench/startup.py                     # this environment's retrosearch, 10 runs each
    python bench/startup.py --retrosearch /path/to/other-venv/bin/retrosearch --json startup.json

Point `--retrosearch` at a plain `pip install .` environment to see what users without extras get.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

COMMANDS = {"--help": ["--help"], "index --help": ["index", "--help"]}


def interpreter_of(script: Path) -> str:
    """The Python a console script runs with (its shebang), so importtime sees the same environment."""
    first_line = script.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    return first_line[2:].strip() if first_line.startswith("#!") else sys.executable


def wall_times(commands: dict[str, list[str]], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    for name, command in commands.items():  # one untimed run each: the file cache, .pyc files
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            raise SystemExit(f"`{name}` failed ({completed.returncode}):\n{completed.stderr[-1500:]}")
    for _ in range(repeats):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            times[name].append(time.perf_counter() - started)
    return times


def import_profile(python: str, script: Path, arguments: list[str]) -> list[tuple[int, int, int, str]]:
    """(self µs, cumulative µs, depth, module) per import, from -X importtime."""
    completed = subprocess.run(
        [python, "-X", "importtime", str(script), *arguments], capture_output=True, text=True, check=True
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
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--top", type=int, default=12, help="rows per import table")
    parser.add_argument("--json", type=Path, help="write the measurements to this file")
    args = parser.parse_args(argv)

    python = interpreter_of(args.retrosearch)
    commands = {"python -c pass": [python, "-c", "pass"]}
    commands |= {f"retrosearch {name}": [str(args.retrosearch), *rest] for name, rest in COMMANDS.items()}
    times = wall_times(commands, args.repeats)
    floor = statistics.median(times["python -c pass"])
    record: dict[str, Any] = {"retrosearch": str(args.retrosearch), "wall_seconds": times, "imports": {}}

    print(f"Start-up of {args.retrosearch}, {args.repeats} runs each: median (range), seconds")
    print("| command | wall | over the interpreter alone |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| `{name}` | {median:.3f} ({min(values):.3f}-{max(values):.3f}) | {median / floor:.1f}x |")

    for name, arguments in COMMANDS.items():
        rows = import_profile(python, args.retrosearch, arguments)
        total = sum(own for own, _, _, _ in rows)
        by_package: dict[str, int] = defaultdict(int)
        for own, _, _, module in rows:
            by_package[module.split(".")[0]] += own
        record["imports"][name] = {"total_us": total, "by_package_us": dict(by_package), "modules": rows}
        print(f"\n`retrosearch {name}`: {total / 1000:.0f} ms of imports, {len(rows)} modules")
        print("| package (self times summed) | ms | share |")
        print("|---|---|---|")
        for package, own in sorted(by_package.items(), key=lambda item: -item[1])[: args.top]:
            print(f"| {package} | {own / 1000:.1f} | {own / total:.0%} |")
        print("| import (cumulative, nesting depth <= 3) | ms | imported within |")
        print("|---|---|---|")
        shallow = [row for row in rows if row[2] <= 3 and not row[3].startswith("retrostar_search.cli")]
        for _, cumulative, depth, module in sorted(shallow, key=lambda row: -row[1])[: args.top]:
            parent = _parent(rows, module, depth)
            print(f"| {module} | {cumulative / 1000:.1f} | {parent} |")

    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
        print(f"\nmeasurements written to {args.json}")
    return 0


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
