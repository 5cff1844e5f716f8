"""The discrete-event simulation: agents and the operator as SimPy processes, a queueing model of the server."""
