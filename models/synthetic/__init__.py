"""Seeded synthetic event streams (numpy only): card transactions with fraud patterns, and click sessions."""

from models.synthetic.transactions import FRAUD_PATTERNS, PATTERNS, generate_transactions

__all__ = ["FRAUD_PATTERNS", "PATTERNS", "generate_transactions"]
