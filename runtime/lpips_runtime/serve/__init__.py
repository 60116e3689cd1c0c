"""``lpips-serve``: the HTTP service over one ``Scorer`` per served model (needs ``pip install 'lpips-rt[serve]'``).

Modules: ``settings`` (limits and defaults), ``app`` (the FastAPI app: ``create_app``), ``service``
(the models, their batchers and readiness), ``routes_ops`` (/healthz, /readyz, /metrics), ``routes_v1``
(/v1), ``v2`` (the Open Inference Protocol routes) and ``v2_tensors`` (its JSON and binary tensors),
``batcher`` (dynamic batching and admission), ``guard`` (body size, time and disconnect bounds per
request), ``uploads`` (request bodies -> named images), ``metrics`` (Prometheus), ``tracing`` (request
ids, OpenTelemetry spans, JSON logs), ``http_errors`` (error answers), ``schemas`` (response bodies and
OpenAPI), ``cli`` (the command). Images are decoded and limited (pixels, memory, tiles) by the Scorer.
"""
