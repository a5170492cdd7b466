"""`python -m environment_registry` starts the service."""

import asyncio
import sys

from environment_registry.app import serve

sys.exit(asyncio.run(serve()))
