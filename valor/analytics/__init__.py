"""DuckDB analytics: the PROMISES, CHAT and DLQ streams copied into SQL tables.

``valor analytics`` runs :func:`follow`; each sync reads only the messages
after the stream sequences remembered in the file (table ``sync_state``),
inserts them in batches and re-folds the promises they touched.  The file is
derived: delete it and the next sync rebuilds it from the log.  It is opened,
written, checkpointed and closed on every sync, and written in DuckDB storage
format ``STORAGE_VERSION``, so the ``duckdb`` CLI from PyPI can read it while
Valor runs.  Tables, views and ready queries: ``docs/analytics.md``.
"""

from .store import STORAGE_VERSION, Locked
from .sync import SyncReport, follow, sync

__all__ = ["STORAGE_VERSION", "Locked", "SyncReport", "follow", "sync"]
