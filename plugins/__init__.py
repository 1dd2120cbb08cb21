"""vlhub's built-in plugins, registered through the ``vlhub`` entry-point group like any other."""
