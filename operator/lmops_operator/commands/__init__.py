"""Subcommands of the ``lmops`` CLI; each module exposes ``register(subparsers)``."""
