"""Settings.from_env is computed from one table of variables, which README.rst lists."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from workers.core.settings import VARIABLES, Settings, SettingsError

README = Path(__file__).resolve().parent.parent / "README.rst"


def readme_variables() -> list[str]:
    """The first column of README's configuration table."""
    section = README.read_text().split("\nConfiguration\n=============\n")[1]
    table = section.split("\n\n")[1]  # the paragraph after the first is the table
    return re.findall(r"^``([A-Z0-9_]+)``", table, re.MULTILINE)


def test_readme_lists_exactly_the_variables_from_env_reads():
    listed = readme_variables()
    assert len(listed) == len(set(listed))
    assert set(listed) == {v.name for v in VARIABLES}


def test_every_setting_but_the_procs_family_has_its_variable():
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {v.field for v in VARIABLES} == fields - {"procs"}
    assert len({v.name for v in VARIABLES}) == len(VARIABLES)


def test_unset_and_empty_variables_take_the_defaults():
    empty = {v.name: "" for v in VARIABLES}
    assert Settings.from_env({}) == Settings.from_env(empty) == Settings()


@pytest.mark.parametrize(("env", "says"), [
    ({"WORKERS_MAX_RECEIVES": "0"}, "WORKERS_MAX_RECEIVES must be between 1 and 1000, not 0"),
    ({"WORKERS_SMTP_PORT": "x"}, "WORKERS_SMTP_PORT must be a whole number, not 'x'"),
    ({"WORKERS_PUSH_ALLOW_TOPICS": "maybe"},
     "WORKERS_PUSH_ALLOW_TOPICS must be true or false, not 'maybe'"),
    ({"WORKERS_EMAIL_BACKEND": "Fax"}, "WORKERS_EMAIL_BACKEND must be one of ses, smtp, not 'fax'"),
    ({"WORKERS_POST_SENT_PROCS": "100"},
     "WORKERS_POST_SENT_PROCS must be between 0 and 99, not 100"),
])
def test_a_value_we_cannot_use_is_one_line_naming_the_variable(env, says):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    assert str(raised.value) == says


def test_values_read_by_kind():
    settings = Settings.from_env({
        "WORKERS_QUEUE_PREFIX": "t-", "PUSHER_PORT": "0", "PUSHER_SSL": "No",
        "WORKERS_SMTP_STARTTLS": "typo", "WORKERS_PUSH_ALLOW_TOPICS": " On ",
        "WORKERS_EMAIL_BACKEND": "SMTP", "WORKERS_WAIT_SECONDS": "5"})
    assert (settings.queue_prefix, settings.pusher_port, settings.pusher_ssl) == ("t-", None, False)
    assert settings.smtp_starttls is True  # a typo never turns TLS off
    assert (settings.push_allow_topics, settings.email_backend) == (True, "smtp")
    assert settings.wait_seconds == 5


def test_repr_masks_the_redis_password_and_hides_secrets():
    shown = repr(Settings.from_env({"REDIS_URL": "redis://:hunter2@h:6379/0",
                                    "PUSHER_SECRET": "psecret",
                                    "WORKERS_SMTP_PASSWORD": "spass"}))
    assert "redis://:***@h:6379/0" in shown
    assert not any(s in shown for s in ("hunter2", "psecret", "spass"))
