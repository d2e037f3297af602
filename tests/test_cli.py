"""The `workers` command as a user runs it, against moto's server and a real redis-server."""

import json

from helpers import ON_SINGLE_AND_CLUSTER, drain, workers_cmd


def test_queues_create_is_idempotent(env, sqs, prefix):
    first = workers_cmd("queues", "create", env=env)
    second = workers_cmd("queues", "create", env=env)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    url = sqs.get_queue_url(QueueName=prefix + "post-sent")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(prefix + "post-sent-dlq")
    assert int(redrive["maxReceiveCount"]) == 3
    assert attrs["VisibilityTimeout"] == "2"


def test_send_enqueues_a_valid_event(env, sqs, queues, prefix):
    event = '{"update_id": "1", "profile_id": "2", "url": "https://buffer.com"}'
    done = workers_cmd("send", "post-sent", event, env=env)
    assert done.returncode == 0, done.stderr
    [message] = drain(sqs, queues[prefix + "post-sent"])
    assert json.loads(message["Body"])["update_id"] == "1"


def test_send_refuses_an_invalid_event_in_one_line(env, sqs, queues, prefix):
    done = workers_cmd("send", "post-sent", '{"update_id": "1"}', env=env)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "profile_id" in done.stderr and "Traceback" not in done.stderr
    assert drain(sqs, queues[prefix + "post-sent"]) == []


def test_send_reads_json_lines_and_sends_none_if_one_is_bad(env, sqs, queues, prefix):
    good = '{"update_id": "1", "profile_id": "2"}\n'
    done = workers_cmd("send", "post-sent", env=env, stdin=good + "{oops\n")
    assert done.returncode == 1 and "line 2" in done.stderr
    assert drain(sqs, queues[prefix + "post-sent"]) == []
    done = workers_cmd("send", "post-sent", env=env, stdin=good * 23)
    assert done.returncode == 0, done.stderr
    assert len(drain(sqs, queues[prefix + "post-sent"])) == 23


@ON_SINGLE_AND_CLUSTER
def test_links_count_prints_count_tab_key(env, redis_client):
    from workers.domain.links.counter import LinkCounter

    LinkCounter(redis_client).record("u1", ["buffer.com/blog?id=3"])
    done = workers_cmd("links", "count", "http://www.buffer.com/blog?id=3&utm_source=x",
                       "https://never.example", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1\tbuffer.com/blog?id=3\n0\tnever.example\n"
    done = workers_cmd("links", "count", "--json", "buffer.com/blog?id=3", env=env)
    assert json.loads(done.stdout) == {"buffer.com/blog?id=3": 1}


def test_links_count_says_which_url_is_invalid(env):
    done = workers_cmd("links", "count", "ftp://x.com", env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("error: invalid URL ftp://x.com")


def test_errors_are_one_line_without_traceback(env):
    env = {**env, "REDIS_URL": "redis://127.0.0.1:1/0"}
    for args in (["links", "count", "a.com"], ["send", "nope", "{}"],
                 ["run", "post-sent", "--concurrency", "0"]):
        done = workers_cmd(*args, env=env)
        assert done.returncode != 0
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    bad_env = {**env, "WORKERS_MAX_RECEIVES": "many"}
    done = workers_cmd("queues", "create", env=bad_env)
    assert done.stderr == "error: WORKERS_MAX_RECEIVES must be a whole number, not 'many'\n"


def test_every_command_explains_itself(env):
    for args in ([], ["queues", "create"], ["run"], ["send"], ["links", "count"]):
        done = workers_cmd(*args, "--help", env=env)
        assert done.returncode == 0 and "Usage: workers" in done.stdout, args


def test_scale_wants_a_queue_and_a_count_together(env):
    done = workers_cmd("scale", "post-sent", env=env)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: give both QUEUE and N, or neither"


def test_version_is_the_installed_distributions(env):
    import configparser

    from helpers import REPO

    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    done = workers_cmd("--version", env={**env, "WORKERS_MAX_RECEIVES": "many"})
    # Answered before the environment is read: a broken setting does not hide the version
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"workers {setup['metadata']['version']}\n"


def test_an_invalid_event_is_refused_in_our_words_not_pydantics(env, sqs, queues, prefix):
    done = workers_cmd("send", "email", '{"to": "ada@example.com", "subject": "Hi"}', env=env)
    assert done.returncode == 1
    assert done.stderr == "error: invalid email event: needs text or html (or a template)\n"
    assert drain(sqs, queues[prefix + "email"]) == []
    done = workers_cmd("send", "post-sent", '{"update_id": "1", "profile_id": "2", '
                       '"created_at": "soon"}', env=env)
    assert done.stderr == ("error: invalid post-sent event: created_at: must be Unix seconds, "
                           "as a number or a numeric string\n")


def test_send_refuses_an_unknown_service_in_one_line(env, sqs, queues, prefix):
    event = '{"update_id": "1", "profile_id": "2", "service": "myspace", "service_update_id": "9"}'
    done = workers_cmd("send", "analytics", event, env=env)
    assert done.returncode == 1
    assert done.stderr == ("error: invalid analytics event: service: unknown service 'myspace' "
                           "(known: facebook, linkedin, twitter)\n")
    assert drain(sqs, queues[prefix + "analytics"]) == []
