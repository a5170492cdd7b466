"""`python -m environment_registry` starts the service."""

import sys

from environment_registry.app import serve
from gaelp.service import run_process

sys.exit(run_process(serve))
