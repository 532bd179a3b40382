"""Seeded synthetic event streams (numpy only): card transactions with fraud patterns, and click sessions."""

from models.synthetic.clicks import ACTIONS, generate_clicks, sessions_of
from models.synthetic.clicks import GENERATOR_VERSION as CLICKS_GENERATOR_VERSION
from models.synthetic.transactions import FRAUD_PATTERNS, PATTERNS, generate_transactions
from models.synthetic.transactions import GENERATOR_VERSION as TRANSACTIONS_GENERATOR_VERSION

__all__ = [
    "ACTIONS",
    "CLICKS_GENERATOR_VERSION",
    "FRAUD_PATTERNS",
    "PATTERNS",
    "TRANSACTIONS_GENERATOR_VERSION",
    "generate_clicks",
    "generate_transactions",
    "sessions_of",
]
