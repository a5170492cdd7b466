"""python -m metrics: run the metrics service until SIGTERM."""

import asyncio
import sys

from metrics.app import serve

sys.exit(asyncio.run(serve()))
