"""What the workers use from outside: Redis, SQS, AWS, HTTP, mail, the networks."""
