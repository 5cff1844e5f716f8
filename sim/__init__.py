"""Migration-agent fleet harness: one agent model, a reference SMS server, a simulation and load tests."""

__version__ = "0.1.0"
