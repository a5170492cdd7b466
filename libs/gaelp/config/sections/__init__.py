"""Typed settings sections, one module per owner (infrastructure, and each service)."""
