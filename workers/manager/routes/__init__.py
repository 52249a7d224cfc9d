"""The manager's routes, one module per resource; each exports ``router``."""
