"""The pure domain model: commands, task lifecycle, the control plane, agents and operators.

Nothing here does I/O, reads a clock, or imports simpy, locust, gevent or an HTTP client.
"""
