"""Tests for bipgw.tls."""
