"""The progress display of ``cp``/``put``/``get``: one rich progress bar on stderr with the
bytes, the rate, the time left and the file count. Drawn only for a person watching: when stdout
and stderr are both terminals and neither --quiet nor --json was given; otherwise every call is
a no-op, so redirected output and logs never receive control characters."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


def wanted(quiet: bool, json_output: bool) -> bool:
    return not quiet and not json_output and sys.stdout.isatty() and sys.stderr.isatty()


class TransferProgress:
    """Totals are known before the first byte moves (the copy plan is made first)."""

    def __init__(self, enabled: bool, total_bytes: int, total_files: int) -> None:
        self._progress: Any = None
        self._task: Any = None
        self._files = 0
        self._total_files = total_files
        if not enabled:
            return
        from rich.console import Console  # imported only when drawn: a faster start otherwise
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}", table_column=None),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[files]}/{task.fields[total_files]} files"),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task(
            "", total=total_bytes, files=0, total_files=total_files
        )

    def __enter__(self) -> TransferProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def file_started(self, name: str) -> None:
        if self._progress is not None:
            shown = name if len(name) <= 30 else "…" + name[-29:]
            self._progress.update(self._task, description=shown)

    def advance(self, count: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, count)

    def file_done(self) -> None:
        self._files += 1
        if self._progress is not None:
            self._progress.update(self._task, files=self._files)
