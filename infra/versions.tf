terraform {
  required_version = ">= 1.11.0" # ephemeral resources and write-only arguments keep the signing key out of the state

  # Local state by default (its path is set by `terraform init -backend-config`);
  # AWS deployments swap in the S3 backend through an override file (see README).
  backend "local" {}

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
    }
  }
}
