"""Evaluation: benchmark loaders (``benchmarks``, ``tempcompass``), scorers (``scorers``: video-r1, official,
lenient; see docs/evaluation.md), records and summaries (``scoring``), the resumable runner (``runner``,
``backends``, ``identity``, ``progress``) and the ``videoktr eval`` / ``videoktr eval score`` commands
(``commands``).

In-process use (e.g. the demo): ``from videoktr.eval.runner import evaluate``. Submodules are not imported here so
that ``videoktr --help`` stays fast.
"""
