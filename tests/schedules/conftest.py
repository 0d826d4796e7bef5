from tests.scheduler.conftest import started  # noqa: F401  (schedulers started as processes would be)
