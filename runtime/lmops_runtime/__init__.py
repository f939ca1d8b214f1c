"""lmops runtime: the Ray Serve applications that load and serve a model. Imports nothing of Kubernetes."""
