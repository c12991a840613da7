"""The benchmark machinery: registry, metrics (evaluator), runner, result store, reports, CLI."""
