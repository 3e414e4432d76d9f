"""PromQL: parsing into Vigil's own AST and vectorised evaluation over the storage interface."""
