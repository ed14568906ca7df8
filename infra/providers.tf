# One provider block for every target. The endpoint is never written here: emulators are
# reached through AWS_ENDPOINT_URL, AWS through the default endpoints.
provider "aws" {
  region = var.region

  skip_credentials_validation = var.emulator
  skip_requesting_account_id  = var.emulator
  skip_metadata_api_check     = var.emulator
  s3_use_path_style           = var.emulator

  default_tags {
    tags = {
      project     = var.project
      environment = var.environment_suffix
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  name       = "${var.project}-${var.environment_suffix}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
}
