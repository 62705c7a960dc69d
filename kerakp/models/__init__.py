"""Backbones, the landmark model and its losses."""
