"""crocopipe pipeline."""
