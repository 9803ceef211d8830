"""Prefect flows: thin wiring of the plain functions in rendering/, pipeline/corpus/, training/ and
evaluation/. Import these modules only after pipeline.prefect_env.configure_prefect has run."""
