"""Drive: put bytes, get bytes, on whichever storage the operator picks."""

__version__ = "0.1.0"
