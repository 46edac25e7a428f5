"""egp-operator: mirrors Scale EGP models into Kubernetes custom resources."""
