"""The root of every exception bipgw raises on purpose.

Callers that want to tell "bipgw refused this" from a programming error catch
L{BipGwError}; each package derives its own family from it.
"""


class BipGwError(Exception):
    """Root of all bipgw errors."""
