"""CLI command bodies, one module per area. Top-level imports: stdlib and typer only."""
