"""The agent that runs on a managed device: job runners for commands, packages and files."""
