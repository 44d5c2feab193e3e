"""The pure core: domain types and the refresh rules.

Nothing here does I/O, talks to AWS or reads a clock: time and stored data come in as arguments, so every
rule is tested without moto (``tests/unit``). Adapters (``chalicelib.storage``, ``chalicelib.providers``,
``chalicelib.events``) sit around it.
"""
