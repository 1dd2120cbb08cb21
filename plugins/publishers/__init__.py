"""Built-in publishers plugins."""
