"""Tests for bipgw.cluster's pure parts (the rest runs on a real Redis: tests.integration)."""
