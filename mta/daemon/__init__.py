"""The running MTA (`mta serve`): `serve` wires the rooms together and handles signals and systemd
notification; `control` is its control socket for the queue commands. Nothing but the command
line imports it."""
