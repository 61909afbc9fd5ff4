"""The `deployx` command: its subcommands, `deployx up`, and running services until stopped."""
