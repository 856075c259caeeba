"""Shared building blocks: arguments, data, models, layers, freezing, losses, metrics, inference, caching."""
