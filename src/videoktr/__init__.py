"""videoktr: token-level reinforcement learning for video language models (Video-KTR and baselines)."""

__version__ = "0.1.0"
