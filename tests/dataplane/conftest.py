import sys
from pathlib import Path

import torch

# dataplane_support lives next to the tests; importlib import mode does not put this folder on sys.path
sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)
# the reference-task tests drive the same data-plane runner as the benchmark (benchmarks/rl)
sys.path.insert(0, str(Path(__file__).parents[2]))
