"""The tools a release runs (`make crds`, `make chart`), apart from the operator and its bench."""
