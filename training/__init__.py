"""Producing models: data, degradations, training, transfer, evaluation, model cards."""
