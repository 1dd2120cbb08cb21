"""Built-in converters plugins."""
