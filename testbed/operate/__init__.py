"""Living with a stack: preflight checks, what runs, what the stores hold, the environment for other tools."""
