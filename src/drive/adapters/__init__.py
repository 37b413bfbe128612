"""Concrete implementations of the domain's ports."""
