"""The test bench of egp-operator, a distribution of its own beside the product: a local EGP
server and a local Kubernetes control plane, so that `make demo`, the e2e tests and the
benchmarks need no account and no cluster. Nothing here is in the operator's wheel or image."""
