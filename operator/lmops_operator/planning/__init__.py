"""Pure planning: from a LanguageModel and what the operator observes to desired objects and status.

Nothing here performs I/O, so every decision is unit-testable and shared by the operator, ``lmops render``
and local mode.
"""
