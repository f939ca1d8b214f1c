"""The only code that talks to the Kubernetes API: a small REST client, the applier, reads and events."""
