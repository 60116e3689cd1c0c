"""``lpips-serve``: the HTTP service over one ``Scorer`` (needs ``pip install 'lpips-rt[serve]'``).

Modules: ``settings`` (limits and defaults), ``app`` (the FastAPI app: ``create_app``), ``batcher``
(dynamic batching and admission), ``guard`` (body size, time and disconnect bounds per request),
``uploads`` (request bodies -> named images), ``metrics`` (Prometheus), ``http_errors`` (error answers),
``schemas`` (response bodies and OpenAPI), ``cli`` (the command). Images are decoded and limited
(pixels, memory, tiles) by the Scorer.
"""
