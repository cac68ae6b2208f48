"""API routers, one module per concern: jobs, assets, runs, ops, a1111, docs."""
