"""Pure domain logic: no I/O, no clocks; time comes in as arguments."""
