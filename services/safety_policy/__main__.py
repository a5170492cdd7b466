"""python -m safety_policy: serve the safety-policy gRPC API until SIGTERM."""

import asyncio
import sys

from safety_policy.app import serve

sys.exit(asyncio.run(serve()))
