"""crocopipe training."""
