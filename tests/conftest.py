"""Shared test configuration: the repository root is importable (see pyproject)."""
