"""dbkeep: a database security plane in the Amazon Aurora mould."""
__version__ = "0.1.0"
