"""The whole local lifecycle on the bundled data: `python -m lifecycle` (the README's main command)."""
