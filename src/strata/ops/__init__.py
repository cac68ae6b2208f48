"""Ops: pure functions on media values, one module per layer. Importing a module registers its nodes."""
