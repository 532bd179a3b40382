"""Seeded synthetic event streams (numpy only): card transactions with fraud patterns, and click sessions."""

from models.synthetic.clicks import ACTIONS, generate_clicks, sessions_of
from models.synthetic.transactions import FRAUD_PATTERNS, PATTERNS, generate_transactions

__all__ = ["ACTIONS", "FRAUD_PATTERNS", "PATTERNS", "generate_clicks", "generate_transactions", "sessions_of"]
