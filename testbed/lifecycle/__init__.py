"""The stack's lifecycle: backends, Terraform, the Lambda build, local processes, IoT things."""
