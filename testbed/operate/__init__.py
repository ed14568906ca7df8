"""Living with a stack: preflight checks and installs, what runs, what the stores hold, the logs, the
IAM check, redriving the dead letters, the environment for other tools."""
