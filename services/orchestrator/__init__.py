"""The orchestrator service: owns runs, drives environments, publishes episodes and transitions."""
