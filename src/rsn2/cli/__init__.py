"""The ``rsn2`` command line."""
