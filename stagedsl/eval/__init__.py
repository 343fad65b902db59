"""Scoring trained runs: predictions of a run on its splits, metrics of them, tables of runs.

Above the engine: reads run directories (single runs and matrix folders) and scores
them; never changes them, except the matrix's prediction cache, which the matrix owns.
"""
