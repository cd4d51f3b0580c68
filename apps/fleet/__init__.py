"""Many streams at once: fleet configuration, source expansion, the worker that serves streams, the process
pool and Ray actors that host workers, their typed messages and the fleet report."""
