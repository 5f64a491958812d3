"""Qwen2.5-VL support: inputs through the real processor (``qwen2_5_vl``), one vision pass shared by the full /
masked / shuffled attribution passes, and a tiny locally built test model (``tiny``)."""
