"""Conditional diffusion: morphology-conditioned galaxy synthesis and augmentation.
"""
