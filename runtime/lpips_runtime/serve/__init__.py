"""``lpips-serve``: the HTTP service over one ``Scorer`` (needs ``pip install 'lpips-rt[serve]'``).

Modules: ``settings`` (limits and defaults), ``app`` (the FastAPI app: ``create_app``), ``batcher``
(dynamic batching and admission), ``guard`` (body size, time and disconnect bounds per request),
``uploads`` (request bodies -> named images), ``metrics`` (Prometheus), ``http_errors`` (error answers),
``schemas`` (response bodies and OpenAPI), ``pixel_limit`` (image sizes from headers, interim), ``cli``
(the command).
"""
