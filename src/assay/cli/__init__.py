"""The ``assay`` command line: one module per command, registered in :mod:`assay.cli.main`."""
