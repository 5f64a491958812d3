"""Evaluation: benchmark loaders (``benchmarks``), scoring (``scoring``), the resumable runner (``runner``,
``backends``) and the ``videoktr eval`` / ``videoktr eval score`` commands (``commands``).

In-process use (e.g. the demo): ``from videoktr.eval.runner import evaluate``. Submodules are not imported here so
that ``videoktr --help`` stays fast.
"""
