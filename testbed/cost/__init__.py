"""What a run's traffic would cost on AWS: the prices (one data file per region), the traffic a run
measured or a plan describes, and the bill with its what-ifs."""
