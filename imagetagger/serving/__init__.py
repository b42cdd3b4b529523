"""Running Serve and Ray: the operations code of ``imagetagger serve``, tests and benchmarks.

The Serve config and its overrides (``serve_config``), the environment Serve runs in
(``serving_env``), HAProxy's config amended (``haproxy``), free ports (``ports``), and the
private one-node Ray of ``imagetagger serve`` (``local_ray``, ``processes``,
``host_resources``, ``serve_loop``, ``serve_logs``). No module here imports Ray (it
starts Ray's processes); the domain (the rest of ``imagetagger``) imports nothing from
here (tests/repo/test_layout.py).
"""
