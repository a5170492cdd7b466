"""GAELP shared libraries: generated protocol code, bus, telemetry, config, rl, sim, db."""
