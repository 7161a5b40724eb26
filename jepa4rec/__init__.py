"""JEPA4Rec: text-based sequential recommendation with a joint-embedding predictive architecture."""
__version__ = "0.1.0"
