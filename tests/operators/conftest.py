import sys
from pathlib import Path

import torch

# the data-plane helpers (service environments, waits) are shared with these tests
sys.path.insert(0, str(Path(__file__).parents[1] / "dataplane"))
torch.set_num_threads(1)
