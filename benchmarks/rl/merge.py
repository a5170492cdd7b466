"""Merge reports of the same benchmark run as separate processes (e.g. one seed each, in parallel):
`python -m benchmarks.rl.merge --out ALL.json part1.json part2.json ...` recomputes the summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.rl.cli import summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rl.merge", description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("parts", type=Path, nargs="+")
    args = parser.parse_args(argv)
    parts = [json.loads(path.read_text()) for path in args.parts]
    first = parts[0]
    if any((p["algo"], p["env"], p["steps"]) != (first["algo"], first["env"], first["steps"]) for p in parts):
        raise SystemExit("parts come from different benchmarks")
    report = summarize(
        first["algo"], first["env"], first["steps"], [run for p in parts for run in p["per_seed"]]
    )
    report.update({key: first[key] for key in ("config", "num_envs", "torch_threads")})
    report["complete"] = all(p.get("complete", False) for p in parts)
    report["merged_from"] = [str(path) for path in args.parts]
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(
        json.dumps(
            {k: report[k] for k in ("algo", "env", "steps", "seeds", "mean_return", "std_return", "sps")}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
