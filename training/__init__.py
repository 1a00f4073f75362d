"""Making models: data, degradations, training, transfer, platform profiles (``arcnn train``).

The studies that measure the models for the docs live apart, in :mod:`training.studies`.
"""
