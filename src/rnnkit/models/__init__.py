"""Application models, one file per application, built from rnnkit layers."""
