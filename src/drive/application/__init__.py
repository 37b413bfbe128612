"""Use-cases. They depend on the domain's ports only."""
