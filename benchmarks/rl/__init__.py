"""RL benchmark CLI: python -m benchmarks.rl --algo ALGO --env ENV_ID --steps N --seeds K --out FILE."""
