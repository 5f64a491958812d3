"""vLLM rollouts of video prompts (optional extra ``videoktr[vllm]``; see docs/vllm.md).

- ``payload.py``: the vLLM request of one video prompt (prompt ids, frames + metadata, processor kwargs), shared by
  the trainer's rollouts, T-GRPO's shuffled rollouts and the eval backend;
- ``install.py``: the installed vLLM checked against the release this package is tested with, refused otherwise.
"""
