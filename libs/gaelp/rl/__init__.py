"""Reinforcement-learning core: algorithms, policies, buffers, state processing, rewards, checkpoints."""
