"""Tests for bipgw.push: the secured push SMS and the PoR check."""
