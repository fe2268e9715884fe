"""Allocating sequence_numbers for outgoing requests.

SMPP 3.4 allows 0x00000001..0x7FFFFFFF; responses are matched to requests by
this number, so one allocator per session hands them out in order and wraps
to 1 after the maximum (as smpplib does), never producing 0 or a value with
the top bit set.
"""

from __future__ import annotations

from typing import Final

#: The smallest and largest sequence_number a request may carry.
MIN_SEQUENCE: Final = 0x00000001
MAX_SEQUENCE: Final = 0x7FFFFFFF


class SequenceNumbers:
    """The sequence_numbers of one session, 1, 2, ... 0x7FFFFFFF, 1, ...

    @param start: the first number L{allocate} returns.
    """

    __slots__ = ("_next",)

    def __init__(self, start: int = MIN_SEQUENCE) -> None:
        if not MIN_SEQUENCE <= start <= MAX_SEQUENCE:
            raise ValueError(f"start must be {MIN_SEQUENCE}..{MAX_SEQUENCE:#x}")
        self._next = start

    def allocate(self) -> int:
        """The next sequence_number; after 0x7FFFFFFF comes 1 again."""
        n = self._next
        self._next = MIN_SEQUENCE if n == MAX_SEQUENCE else n + 1
        return n

    def peek(self) -> int:
        """The number L{allocate} will return next, without using it."""
        return self._next

    def __iter__(self) -> SequenceNumbers:
        return self

    def __next__(self) -> int:
        return self.allocate()
