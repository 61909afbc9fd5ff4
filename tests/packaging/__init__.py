"""The package as users install it: built wheels, fresh venvs, and what each command imports."""
