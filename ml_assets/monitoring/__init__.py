"""Watching the model in production: reference profile, drift reports, label checks, and the sensors that act."""
