"""DeployX Scheduler services: domain logic, the event store, and the processes that run it."""
