"""What this backend does not do that AWS does: probes that each exercise one AWS behaviour the
pipeline relies on, on throwaway resources, and a table of what they found."""
