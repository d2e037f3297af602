"""Doors to the outside: Redis, SQS and the AWS clients, HTTP, mail, Pusher, tracing, the
social networks, and claims (the idempotency primitive). Know core only."""
