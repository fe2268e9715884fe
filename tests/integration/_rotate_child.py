"""Child of L{tests.integration.test_rotate_root_crash}: rotate, printing each batch.

C{python -m tests.integration._rotate_child URL ROOT_FILE KEYSTORE BATCH}
runs (or resumes) one root-key rotation and prints a line after every
committed batch, so the parent can kill it at a chosen point; "done" at
the end.
"""

from __future__ import annotations

import sys

from bipgw.keys import FileRootKeyRing
from bipgw.store import Progress, RootRotation, create_sql_engine


def main(url: str, root_file: str, keystore: str, batch: str) -> None:
    engine = create_sql_engine(url)

    def progress(p: Progress) -> None:
        sys.stdout.write(f"batch {p.done} {p.total}\n")
        sys.stdout.flush()

    RootRotation(
        engine, FileRootKeyRing(root_file), keystore, batch=int(batch), progress=progress
    ).run()
    sys.stdout.write("done\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(*sys.argv[1:])
