"""The event stream for several nodes: every event also appended to a Redis Stream (`[events] redis`).

`buffer` (the bounded buffer and outage bookkeeping, pure), `redis_stream` (the task that drains
it into Redis with pipelined XADDs).
"""
