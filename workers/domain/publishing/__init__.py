"""Publishing exactly once: the Redis stores around a post (publications, rate limits,
credentials, engagement)."""
