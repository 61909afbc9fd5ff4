"""Executors: carry each TaskDue of one task type to the devices and record what they did."""
