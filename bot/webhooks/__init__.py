"""Completion by webhook: the listener providers call, fal's signature check, and the hub that wakes jobs."""
