"""What the command-line tools share (the simulator, the rule bridge, the testbed): argument types
with limits and help that shows defaults, and the latency histogram they report. Not in the Lambda
zip: the processor needs none of it."""
