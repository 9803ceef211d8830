"""Scenes, cameras, renderer backends, pair sampling and co-visibility. Imports no torch."""
