"""The executor's log lines (see valor.logs): ``grep '"promise_id":12'`` finds one story."""

from valor.logs import EventLog, line

_log = EventLog("valor.executor")
debug, info, warning = _log.debug, _log.info, _log.warning

__all__ = ["debug", "info", "line", "warning"]
