"""videoktr.analysis: which tokens Video-KTR selected and why (highlighting, statistics, plots, reports).

Works on plain Python / torch data (token pieces, per-signal masks and scores); no model is needed. Submodules:
``tokens`` (TokenRecord, token_records, pieces_from_ids), ``highlight`` (Markdown / HTML / rich rendering),
``stats`` (selection_stats, attribution_precision), ``attribution`` (AUROC / precision / lift of each signal against
word labels, bootstrap intervals), ``plots`` (PNG curves and bars; imports matplotlib lazily), ``report``
(report.md + report.html from sections, plots, examples), ``summary`` (the demo report's summary tables).
"""

from videoktr.analysis.tokens import TokenRecord, pieces_from_ids, records_from_batch, token_records

__all__ = ["TokenRecord", "pieces_from_ids", "records_from_batch", "token_records"]
