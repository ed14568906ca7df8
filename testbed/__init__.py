"""The command line behind the Makefile: build, bring stacks up and down, deploy, demo."""
