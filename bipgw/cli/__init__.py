"""The C{bipgw} command line (the C{bipgw} console script).

L{main} takes the arguments and returns the exit status, so tests and other
programs can run any command in-process; see C{bipgw --help}.
"""

from bipgw.cli._main import main

__all__ = ["main"]
