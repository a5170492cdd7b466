import sys
from pathlib import Path

# The process helpers of the data-plane tests (service environments, status polls, topic reads).
sys.path.insert(0, str(Path(__file__).parents[1] / "dataplane"))
# The synthetic phase inputs (assessments) shared by the phase tests.
sys.path.insert(0, str(Path(__file__).parent))
