"""Evaluation: labelled datasets, metrics (``sovtp.eval.metrics``), prompt ablation and reports.

Nothing heavy is imported here; each submodule loads numpy/matplotlib when used.
"""
