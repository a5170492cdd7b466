"""The environment-registry service: a catalogue of environment specs with immutable versions."""
