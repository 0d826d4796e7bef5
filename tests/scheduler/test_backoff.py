import pytest

from services.scheduler.backoff import retry_delay


@pytest.mark.parametrize("attempt,expected", [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 300.0)])
def test_delay_grows_exponentially_up_to_the_cap(attempt, expected):
    assert retry_delay(7, attempt, base=1.0, cap=300.0, jitter=0.0) == expected


def test_jitter_stays_within_its_fraction_and_is_deterministic():
    delays = [retry_delay(pid, 1, base=10.0, jitter=0.1) for pid in range(200)]
    assert all(9.0 <= d <= 11.0 for d in delays)
    assert len(set(delays)) > 150  # spread apart
    assert delays == [retry_delay(pid, 1, base=10.0, jitter=0.1) for pid in range(200)]
