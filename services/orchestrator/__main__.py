import asyncio
import sys

from orchestrator.app import serve

sys.exit(asyncio.run(serve()))
