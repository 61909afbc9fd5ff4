"""Event types of the DeployX log and their envelope codec; depends only on msgspec."""
