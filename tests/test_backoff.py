from workers.core.backoff import ExponentialBackoff


def test_visibility_doubles_with_each_receive_up_to_the_cap():
    backoff = ExponentialBackoff(base=30, cap=200)
    assert [backoff.visibility(n) for n in range(1, 6)] == [30, 60, 120, 200, 200]


def test_retry_after_wins_over_the_backoff():
    assert ExponentialBackoff(base=30).visibility(4, retry_after=7.2) == 8


def test_a_zero_base_still_waits_a_second():
    assert ExponentialBackoff(base=0).visibility(1) == 1
