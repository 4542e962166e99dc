"""`callersync up`'s crash-restart policy: wait 1 s, doubling with each crash up to 30 s; back to 1 s once the
child had run a minute. tests/system/test_up_supervision.py restarts a killed wallet live."""

from services.runtime.supervisor import restart_delay_s


def delays(run_times_s: list[float]) -> list[float]:
    """The waits before each restart of a child that ran these many seconds before each crash."""
    waited: list[float] = []
    last = None
    for ran_s in run_times_s:
        last = restart_delay_s(last, ran_s)
        waited.append(last)
    return waited


def test_the_first_crash_waits_one_second():
    assert restart_delay_s(None, 0.5) == 1.0
    assert restart_delay_s(None, 3600) == 1.0


def test_each_crash_in_a_row_doubles_the_wait_up_to_thirty_seconds():
    assert delays([0.1] * 8) == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_minute_of_health_resets_the_wait_to_one_second():
    assert delays([0.1, 0.1, 0.1, 0.1, 60, 0.1]) == [1, 2, 4, 8, 1, 2]


def test_less_than_a_minute_of_health_keeps_doubling():
    assert delays([0.1, 0.1, 0.1, 59.9]) == [1, 2, 4, 8]
