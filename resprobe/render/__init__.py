"""Presentation only: diagrams and documents made from a Graph or a Report."""
