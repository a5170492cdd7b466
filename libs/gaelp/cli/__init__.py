"""The `gaelp` command line."""
