"""The Router: the ingress that speaks OpenAI and the seeds' endpoints and splits traffic between revisions.

Split by responsibility: ``ingress`` (the Serve deployment; endpoints only delegate), ``intake`` (keys, rate
limits, sizes, parsing), ``dispatch`` (route, retry, stream), ``serving`` with ``responses`` (one class per
endpoint family, typed response models) and ``telemetry`` (counters, /stats, /metrics). Pure parts
(schemas, traffic, limits, stats, openai_format) import no Ray, so unit tests run without a cluster.
"""
