"""python -m safety_policy: serve the safety-policy gRPC API until SIGTERM."""

import sys

from gaelp.service import run_process
from safety_policy.app import serve

sys.exit(run_process(serve))
