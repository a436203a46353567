"""Imports every block module so that each registers itself (one module per block or family)."""
