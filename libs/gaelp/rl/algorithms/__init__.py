"""Algorithms: each module holds one algorithm's config, loss and update, reading top to bottom."""
