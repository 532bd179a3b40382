"""Session recommendation: clicks -> one GRU step per click on the session's versioned state -> top-k items."""
