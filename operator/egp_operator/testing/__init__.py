"""Test and demo infrastructure shipped with the package: a local EGP server and a local
Kubernetes control plane, so `make demo`, the e2e tests and the benchmarks need no account and
no cluster."""
