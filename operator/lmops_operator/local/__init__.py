"""Local mode: the operator's planner pieces driving a Ray on this machine, with state in a local file.

Revision naming, ``decide_traffic`` and ``build_serve_config`` are the very functions the operator runs;
only the I/O differs: Serve application statuses come from the local Serve controller instead of the
RayService status, the serve config is deployed with ``lmops_runtime.local.deploy`` instead of written into
``serveConfigV2``, and the status lives in a JSON file instead of the LanguageModel's status subresource.
"""
