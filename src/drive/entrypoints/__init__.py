"""Ways into the core: the HTTP API and the command line."""
