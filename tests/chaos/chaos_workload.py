"""The chaos suite's workload: post-sent messages with duplicates and poison among them,
publish events (some enqueued twice) whose posts' links count through the post-sent they
chain, and what must come of them (which (update_id, URL) pairs count, which bodies end in the
DLQ, which updates go out: each exactly once)."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

SEED = 20261123
CREATED_AT = 1480431305


@dataclass
class Workload:
    """Message bodies in send order, and what must come of them."""

    bodies: list[str] = field(default_factory=list)
    valid: int = 0  # messages holding a valid event (duplicates included)
    duplicates: int = 0  # of those, the ones repeating an update_id sent before
    poison: Counter[str] = field(default_factory=Counter)  # body -> times sent
    pairs: set[tuple[str, str]] = field(default_factory=set)  # (update_id, key) that count
    keys: list[str] = field(default_factory=list)  # every key the workload could name
    publish: list[str] = field(default_factory=list)  # publish bodies, in send order
    published: dict[str, str] = field(default_factory=dict)  # update_id -> service, each once

    def expected_counts(self) -> dict[str, int]:
        """count(key) = the number of distinct update_ids whose events named it (SPEC.md)."""
        counts = dict.fromkeys(self.keys, 0)
        for _, key in self.pairs:
            counts[key] += 1
        return counts


def url_keys(count: int) -> list[str]:
    """Normalized keys: bare hosts, paths, and paths with a query that is kept."""
    shapes = [lambda i: f"site{i}.example", lambda i: f"site{i % 97}.example/p{i}",
              lambda i: f"site{i % 89}.example/a/{i}?id={i}&x=y"]
    return [shapes[i % 3](i) for i in range(count)]


def spell(key: str, rng: random.Random) -> str:
    """One of the many URLs that normalize to ``key`` (SPEC.md, "URL normalization")."""
    host, slash, rest = key.partition("/")
    scheme = rng.choice(["http", "https"])
    port = rng.choice(["", "", f":{80 if scheme == 'http' else 443}"])
    host = rng.choice([host, f"www.{host}", host.upper(), f"WWW.{host.capitalize()}"])
    path = slash + rest if slash else rng.choice(["", "/"])
    if rng.random() < 0.3:
        path += ("&" if "?" in path else "?") + "utm_source=chaos&utm_medium=q"
    fragment = rng.choice(["", "", "#top"])
    pad = rng.choice(["", " "])
    return f"{pad}{scheme}://{host}{port}{path}{fragment}{pad}"


INVALID_URLS = ["ftp://site1.example/file", "javascript:alert(1)", "https://", "mailto:a@b.c",
                "https://site2.example/" + "x" * 2100]


def poison_body(i: int, rng: random.Random) -> str:
    """A message no retry can fix, told apart from every other by its number."""
    tag = f"poison-{i}"
    makers: list[Callable[[], str]] = [
        lambda: f"{tag}: not JSON at all",
        lambda: '{"update_id": "%s", "profile_id": "p1", "url": "https://site0.exa' % tag,
        lambda: json.dumps({"update_id": tag, "url": "https://site0.example/"}),
        lambda: json.dumps({"update_id": tag, "profile_id": 7, "url": "https://a.example"}),
        lambda: json.dumps({"update_id": " ", "profile_id": tag}),
        lambda: json.dumps({"update_id": tag, "profile_id": "p1", "created_at": "yesterday"}),
        lambda: json.dumps({"update_id": tag, "profile_id": "p1", "urls": "https://a.example"}),
        lambda: json.dumps([tag, "https://site0.example/"]),
        lambda: "\ufeff" + json.dumps({"update_id": tag, "profile_id": "\u202e\U0001F600"}),
        lambda: "[" * 3000 + json.dumps(tag) + "]" * 3000,
    ]
    draw = rng.random()
    if draw < 0.005:  # near SQS's size limit: a handful per long run
        return json.dumps({"update_id": tag, "pad": "x" * 200_000})
    if draw < 0.02:
        return json.dumps({"update_id": tag, "profile_id": "p1",
                           "urls": [f"https://a.example/{n}" for n in range(1001)]})
    return rng.choice(makers)()


def workload(events: int, seed: int = SEED) -> Workload:
    """``events`` messages: a tenth duplicates of valid events, a tenth poison, the rest valid
    events naming none to three of a pool of URLs, each spelled in one of its many forms, some
    beside an invalid URL (skipped, the rest still counts)."""
    rng = random.Random(seed)
    work = Workload(keys=url_keys(max(60, events // 20)))
    poison, duplicates = events // 10, events // 10
    originals: list[tuple[dict[str, Any], str]] = []
    messages: list[str] = []

    def add(event: dict[str, Any], body: str) -> None:
        messages.append(body)
        work.pairs.update((event["update_id"], key) for key in event["keys"])

    for i in range(events - poison - duplicates):
        event = {"update_id": f"u{i}", "profile_id": f"p{i % 50}", "created_at": CREATED_AT,
                 "service": rng.choice(["twitter", "facebook", "linkedin"]),
                 "keys": rng.sample(work.keys, rng.choice([0, 1, 1, 1, 2, 2, 3]))}
        body = post_body(event, rng, invalid=rng.random() < 0.1)
        originals.append((event, body))
        add(event, body)
    for _ in range(duplicates):
        event, body = rng.choice(originals)
        how = rng.random()
        if how < 0.6:  # the API sent the same body twice
            add(event, body)
        elif how < 0.9:  # the same event, its URLs spelled otherwise
            add(event, post_body(event, rng))
        else:  # the same update naming one more URL: that one counts for it too
            more = {**event, "keys": event["keys"] + [rng.choice(work.keys)]}
            add(more, post_body(more, rng))
    work.valid, work.duplicates = len(messages), duplicates
    for i in range(poison):
        body = poison_body(i, rng)
        work.poison[body] += 1
        messages.append(body)
    rng.shuffle(messages)
    work.bodies = messages
    add_publish(work, events // 10, rng)
    return work


# The profiles publish events come from: each has its own account on each network.
PUBLISH_PROFILES = 20


def add_publish(work: Workload, events: int, rng: random.Random) -> None:
    """``events`` publish bodies, a fifth of them repeats of one sent before; each text names
    none to two of the pool's URLs (spelled variously), which count once it is posted."""
    originals: list[str] = []
    for i in range(events - events // 5):
        update_id, service = f"pub{i}", rng.choice(["twitter", "facebook", "linkedin"])
        keys = rng.sample(work.keys, rng.choice([0, 1, 1, 2]))
        profile = f"pp{i % PUBLISH_PROFILES}"
        body = {"update_id": update_id, "profile_id": profile, "service": service,
                "text": " ".join([f"chaos post {update_id}",
                                  *(spell(k, rng).strip() for k in keys)])}
        if service != "twitter":
            body["target"] = publish_target(service, profile)
        originals.append(json.dumps(body))
        work.published[update_id] = service
        work.pairs.update((update_id, key) for key in keys)
    work.publish = originals + [rng.choice(originals) for _ in range(events // 5)]
    rng.shuffle(work.publish)


def publish_target(service: str, profile: str) -> str:
    """Where ``profile`` posts: its Facebook page, its LinkedIn author URN."""
    number = int(profile.removeprefix("pp"))
    return f"90000000{number:04d}" if service == "facebook" else f"urn:li:person:chaos{number}"


def publish_accounts() -> list[dict[str, Any]]:
    """The networks' stand-in accounts of every publishing profile, and its tokens by service."""
    accounts = []
    for n in range(PUBLISH_PROFILES):
        profile = f"pp{n}"
        accounts += [
            {"service": "twitter", "token": f"x-{profile}", "user_id": f"77000{n:04d}",
             "username": f"chaos{n}"},
            {"service": "facebook", "token": f"fb-{profile}",
             "pages": [publish_target("facebook", profile)]},
            {"service": "linkedin", "token": f"li-{profile}",
             "authors": [publish_target("linkedin", profile)]}]
    return accounts


def publish_token(service: str, profile: str) -> str:
    return {"twitter": "x-", "facebook": "fb-", "linkedin": "li-"}[service] + profile


def post_body(event: dict[str, Any], rng: random.Random, invalid: bool = False) -> str:
    """A post-sent message naming ``event``'s keys, in ``url`` or ``urls``."""
    urls = [spell(key, rng) for key in event["keys"]]
    if invalid:
        urls.insert(rng.randrange(len(urls) + 1), rng.choice(INVALID_URLS))
    body = {k: event[k] for k in ("update_id", "profile_id", "created_at", "service")}
    if len(urls) == 1 and rng.random() < 0.5:
        body["url"] = urls[0]
    else:
        body["urls"] = urls
    return json.dumps(body)
