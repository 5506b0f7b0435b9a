"""The test suite (a package, so each test module and conftest.py is imported once, under tests.)."""
