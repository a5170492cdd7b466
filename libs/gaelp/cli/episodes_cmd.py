"""`gaelp episodes tail [--run R] [--phase P] [--follow]`: episode summaries as JSON lines.

Read straight from the episodes topic with manual partition assignment: no consumer group, no
commits, so the services' positions never move.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from gaelp.cli import targets
from gaelp.client.streams import episode_json, tail_episodes


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    episodes = subparsers.add_parser("episodes", help="the episode stream")
    verbs = episodes.add_subparsers(dest="episodes_command", required=True)
    tail = verbs.add_parser("tail", help="episode summaries as JSON lines, from the topic's start")
    tail.add_argument("--run", default="", help="only this run")
    tail.add_argument("--phase", choices=sorted(targets.PHASES), default=None)
    tail.add_argument("--follow", action="store_true", help="keep printing new episodes until Ctrl-C")
    tail.add_argument("--last", type=int, default=0, help="without --follow: only the last N episodes")
    tail.add_argument("--bootstrap", default="", help="broker host:port (default from settings)")
    tail.set_defaults(func=tail_command)


@targets.one_line_errors
def tail_command(args: argparse.Namespace) -> int:
    bootstrap = targets.bootstrap(args, targets.settings())
    phase = targets.PHASES[args.phase] if args.phase else 0
    return asyncio.run(_tail(bootstrap, args.run, phase, args.follow, args.last))


async def _tail(bootstrap: str, run_id: str, phase: int, follow: bool, last: int) -> int:
    held: list[str] = []
    async for episode in tail_episodes(bootstrap, run_id=run_id, phase=phase, follow=follow):
        line = json.dumps(episode_json(episode))
        if last and not follow:
            held = [*held[-(last - 1):], line] if last > 1 else [line]
            continue
        print(line, flush=True)
    if held:
        sys.stdout.write("\n".join(held) + "\n")
    return 0
