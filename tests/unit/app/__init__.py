"""Tests for L{bipgw.app}: the gateway as a static service tree."""
