"""Foundations every layer may use: the on-disk cache, the params base class, metrics, seeding,
yml loading and text files. Imports nothing else of the package."""
