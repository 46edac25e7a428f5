"""One sync cycle: EGP listing -> pure plan -> Kubernetes writes."""
