"""tuningfork: galaxy morphology from survey cutouts."""
__version__ = "0.1.0"
