import sys

from gaelp.service import run_process
from learner.app import serve

sys.exit(run_process(serve))
