"""Operating a process: metrics, health checks, JSON logs and the graceful drain. Each is a small call from
wherever a process is assembled (bot.app), whatever its kind."""
