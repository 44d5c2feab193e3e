"""``make bench``: speed and scale benchmarks against the real local stack, written to ``docs/benchmarks.md``.

    .venv/bin/python -m tests.bench --output docs/benchmarks.md        # the full run (several minutes)
    .venv/bin/python -m tests.bench --quick --output /tmp/bench.md      # 1 repetition, small sizes (smoke test)
    .venv/bin/python -m tests.bench --only refresh_all,cold_start ...   # a subset

Every scenario starts its own local stack (``tests.stack.LocalStack``: the same ``python -m devstack`` that
``make run`` starts, on ephemeral ports, with a throw-away state dir) and fake providers
(``tests.fakes.provider_server.FakeProviderServer``) and stops them again, also when it fails. The runner lives under
``tests/`` so that it is never bundled into the Lambda package; pytest does not collect it (no ``test_*`` files).
"""
