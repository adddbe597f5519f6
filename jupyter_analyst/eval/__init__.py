"""Judged evaluation: run the analyst on real datasets and check what it produced.

``suite`` (built-in tasks over packaged datasets) and ``dabench`` (InfiAgent-DABench's
format) make tasks; ``harness`` runs them with N workers into a result folder; ``judge``
checks each run (completion, re-run, figures, answers, grounded numbers); ``report``
writes Markdown/JSON/PNG and compares two folders; ``cli`` is ``jupyter analyst eval``.
Nothing is imported here so the CLI stays fast.
"""
