"""The pure core: model, id rules, errors and ports. Imports no I/O library."""
