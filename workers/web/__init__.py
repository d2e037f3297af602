"""What the project's HTTP programs share: ``server``, the serving of an ASGI app on a
well-kept HTTP server (granian), with its limits, a port shared by several processes, a warm
stop and a watch on the parent process."""
