"""Settings.from_env reads the variables its fields declare, and docs/configuration.rst's table is
generated from those fields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workers.core.settings import VARIABLES, Settings, SettingsError, rst_table

CONFIGURATION = Path(__file__).resolve().parent.parent / "docs" / "configuration.rst"


def test_the_configuration_page_holds_the_table_generated_from_the_settings():
    page = CONFIGURATION.read_text()
    listed = page.split("\n.. BEGIN GENERATED")[1].split("\n", 1)[1].split("\n.. END GENERATED")[0]
    assert listed.strip() == rst_table().strip(), (
        "docs/configuration.rst's table is not the settings': run bin/settings-table")


def test_the_table_lists_every_variable_once():
    first_column = re.findall(r"^``(\S+)``", rst_table(), re.MULTILINE)
    assert sorted(first_column) == sorted(
        [*VARIABLES, "WORKERS_<PROGRAM>_PROCS", "WORKERS_<NETWORK>_API_<OPTION>"])


def test_every_setting_but_the_two_families_has_its_variable():
    fields = set(Settings.model_fields)
    assert set(VARIABLES.values()) == fields - {"procs", "network_options"}
    assert all(Settings.model_fields[f].description for f in fields)


def test_unset_and_empty_variables_take_the_defaults():
    empty = {name: "" for name in VARIABLES}
    assert Settings.from_env({}) == Settings.from_env(empty) == Settings()


def test_only_the_declared_names_are_read():
    assert Settings.from_env({"max_receives": "0", "region": "x", "aws_default_region": "y",
                              "procs": '{"push": 9}'}) == Settings()


@pytest.mark.parametrize(("env", "says"), [
    ({"WORKERS_MAX_RECEIVES": "0"}, "WORKERS_MAX_RECEIVES must be between 1 and 1000, not 0"),
    ({"WORKERS_SMTP_PORT": "x"}, "WORKERS_SMTP_PORT must be a whole number, not 'x'"),
    ({"WORKERS_PUSH_ALLOW_TOPICS": "maybe"},
     "WORKERS_PUSH_ALLOW_TOPICS must be true or false, not 'maybe'"),
    ({"WORKERS_EMAIL_BACKEND": "Fax"}, "WORKERS_EMAIL_BACKEND must be one of ses, smtp, not 'fax'"),
    ({"WORKERS_POST_SENT_PROCS": "100"},
     "WORKERS_POST_SENT_PROCS must be between 0 and 99, not 100"),
    ({"PUSHER_PORT": "70000"}, "PUSHER_PORT must be between 0 and 65535, not 70000"),
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


def test_procs_are_found_by_name_and_fall_back_on_the_default_given():
    settings = Settings.from_env({"WORKERS_PUSH_PROCS": "3", "WORKERS_EMAIL_MAX_PROCS": "x",
                                  "WORKERS_LINKS_API_PROCS": ""})
    assert settings.procs == {"push": 3}
    assert (settings.procs_for("push", 1), settings.procs_for("links-api", 1)) == (3, 1)


def test_repr_masks_the_redis_password_and_hides_secrets():
    shown = repr(Settings.from_env({"REDIS_URL": "redis://:hunter2@h:6379/0",
                                    "PUSHER_SECRET": "psecret",
                                    "WORKERS_SMTP_PASSWORD": "spass"}))
    assert "redis://:***@h:6379/0" in shown
    assert not any(s in shown for s in ("hunter2", "psecret", "spass"))


def test_a_network_s_options_are_read_by_name_whatever_the_network():
    settings = Settings.from_env({"WORKERS_TWITTER_API_URL": "http://x.test",
                                  "WORKERS_MASTODON_API_VISIBILITY": "unlisted",
                                  "WORKERS_FACEBOOK_API_VERSION": "",
                                  "WORKERS_LINKS_API_PORT": "8081"})
    assert settings.network_option("twitter", "url", "https://api.twitter.com") == "http://x.test"
    assert settings.network_option("mastodon", "visibility", "public") == "unlisted"
    # unset or empty: the network's own default; the read API's variables are not a network's
    assert settings.network_option("facebook", "version", "v25.0") == "v25.0"
    assert settings.network_options == {"twitter_api_url": "http://x.test",
                                        "mastodon_api_visibility": "unlisted"}
    assert settings.links_api_port == 8081
