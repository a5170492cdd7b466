"""python -m metrics: run the metrics service until SIGTERM."""

import sys

from gaelp.service import run_process
from metrics.app import serve

sys.exit(run_process(serve))
