"""Tools for connector authors: checks, the plugin scaffold, catalog coverage."""
