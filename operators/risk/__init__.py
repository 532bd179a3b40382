"""Risk scoring: transactions -> incremental per-account features -> rules + model -> decision with reasons."""
