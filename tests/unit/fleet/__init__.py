"""Tests for the simulated fleet (simcard.fleet, simfleet, its twistd plugin)."""
