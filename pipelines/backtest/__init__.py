"""Backtests: re-score history with a candidate model into a shadow topic and diff it against production."""
