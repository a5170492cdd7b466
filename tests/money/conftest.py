import sys
from pathlib import Path

# The process helpers of the data-plane tests (service environments, status polls, topic reads).
sys.path.insert(0, str(Path(__file__).parents[1] / "dataplane"))
# The synthetic phase-machine inputs of the orchestrator tests.
sys.path.insert(0, str(Path(__file__).parents[1] / "orchestrator"))
sys.path.insert(0, str(Path(__file__).parent))
