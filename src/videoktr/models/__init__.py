"""Video LLM support: the model families (``families``: Qwen2.5-VL, Qwen2-VL, Qwen3-VL, Qwen3.5), inputs through the
real processor (``inputs``), batch split / concat (``batching``), one vision pass shared by the full / masked /
shuffled passes (``qwen2_5_vl``, ``forwards``), and tiny locally built test models of every family (``tiny``)."""
