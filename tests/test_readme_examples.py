"""README's `workers send` examples, one per queue, run as a newcomer would: they stay true."""

from __future__ import annotations

import json
import shlex

from helpers import REPO, drain, workers_cmd
from workers import QUEUES
from workers.domain.sending import rendering


def readme_sends() -> list[list[str]]:
    """Every ``workers send`` line of README.rst's literal blocks, split as a shell would."""
    lines = (REPO / "README.rst").read_text().splitlines()
    return [shlex.split(line) for line in lines if line.startswith("    workers send ")]


def test_readme_shows_a_send_for_every_queue():
    shown = {argv[2] for argv in readme_sends()}
    assert sorted(set(QUEUES) - shown) == []


def test_every_readme_send_enqueues_its_event_as_written(env, sqs, queues, prefix):
    sends = readme_sends()
    assert sends
    for argv in sends:
        # Given README's line, as written
        _, _, queue, event = argv
        # When a newcomer runs it against the local stack
        done = workers_cmd(*argv[1:], env=env)
        # Then it is accepted and the queue holds that very event
        assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr}"
        [message] = drain(sqs, queues[prefix + queue])
        sqs.delete_message(QueueUrl=queues[prefix + queue],
                           ReceiptHandle=message["ReceiptHandle"])
        assert json.loads(message["Body"]) == json.loads(event)


def test_readme_email_templates_render_with_the_params_shown():
    templated = [json.loads(argv[3]) for argv in readme_sends()
                 if argv[2] == "email" and "template" in json.loads(argv[3])]
    assert templated
    for event in templated:
        rendered = rendering.render(event["template"], event["params"])
        assert rendered.subject and event["params"]["name"] in rendered.text
