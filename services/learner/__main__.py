import asyncio
import sys

from learner.app import serve

sys.exit(asyncio.run(serve()))
