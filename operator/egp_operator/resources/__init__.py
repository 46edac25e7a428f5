"""The custom resources: pydantic models of EGPSource and EGPModel, and their CRDs."""
