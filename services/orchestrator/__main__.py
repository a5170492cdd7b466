import sys

from gaelp.service import run_process
from orchestrator.app import serve

sys.exit(run_process(serve))
