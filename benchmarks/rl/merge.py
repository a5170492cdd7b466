"""Merge reports of the same benchmark run as separate processes (e.g. one seed each, in parallel):
`python -m benchmarks.rl.merge --out ALL.json part1.json part2.json ...` recomputes the summary of
the in-process seeds and, where parts have them, of the data-plane seeds (`data_plane`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.rl.cli import summarize

COPIED_KEYS = ("config", "num_envs", "torch_threads", "in_process_source")


def _runs(sections: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    runs = [run for section in sections for run in section["per_seed"]]
    seeds = [run["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"{what}: a seed comes in more than one part ({sorted(seeds)})")
    return sorted(runs, key=lambda run: run["seed"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rl.merge", description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("parts", type=Path, nargs="+")
    parser.add_argument(
        "--seeds", type=int, default=None,
        help="seeds the benchmark asked for: complete when every merged section has them all (a part"
        " of a run stopped early says incomplete); default: complete when every part says so",
    )
    args = parser.parse_args(argv)
    parts = [json.loads(path.read_text()) for path in args.parts]
    in_process = [p for p in parts if "per_seed" in p]
    data_plane = [p["data_plane"] for p in parts if "data_plane" in p]
    sections = in_process + data_plane
    first = sections[0]
    key = (first["algo"], first["env"], first["steps"])
    if any((s["algo"], s["env"], s["steps"]) != key for s in sections):
        raise SystemExit("parts come from different benchmarks")
    report: dict[str, Any] = {}
    if in_process:
        report = summarize(first["algo"], first["env"], first["steps"], _runs(in_process, "in-process"))
        report.update({key: in_process[0][key] for key in COPIED_KEYS if key in in_process[0]})
    if data_plane:
        report["data_plane"] = summarize(first["algo"], first["env"], first["steps"],
                                         _runs(data_plane, "data plane"))
        if "sps" in report:
            report["data_plane_speed_ratio"] = report["data_plane"]["sps"] / report["sps"]
    if args.seeds is None:
        report["complete"] = all(p.get("complete", False) for p in parts)
    else:
        summaries = ([report] if in_process else []) + ([report["data_plane"]] if data_plane else [])
        report["complete"] = all(summary["seeds"] == args.seeds for summary in summaries)
    report["merged_from"] = [str(path) for path in args.parts]
    args.out.write_text(json.dumps(report, indent=2, default=str))
    headline: dict[str, Any] = {
        k: report[k] for k in ("algo", "env", "steps", "seeds", "mean_return", "std_return", "sps")
        if k in report
    }
    if data_plane:
        headline["data_plane"] = {k: report["data_plane"][k] for k in ("seeds", "mean_return", "sps")}
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
