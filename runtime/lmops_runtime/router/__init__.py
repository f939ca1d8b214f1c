"""The Router: the ingress that speaks OpenAI and the seeds' endpoints and splits traffic between revisions.

Pure parts (schemas, traffic, limits, stats) import no Ray so that unit tests run without a cluster; the
Serve deployment lives in ``lmops_runtime.router.deployment``.
"""
