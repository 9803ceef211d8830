"""crocopipe evaluation."""
