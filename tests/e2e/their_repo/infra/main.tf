# A team's own pipeline, not this project's: a greenhouse climate rule feeding a queue, a function
# that stores what the rule selected, and a table keyed its own way. It shares nothing with infra/
# but the provider; the testbed reaches it through the output names in pyproject.toml.
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "emulator" {
  description = "Set by the testbed on an emulator: no account checks, path-style S3."
  type        = bool
  default     = false
}

variable "enable_iot_rule" {
  description = "Set false by the testbed where the emulator has no IoT Core (its bridge runs the rule)."
  type        = bool
  default     = true
}

variable "environment_suffix" {
  type    = string
  default = "dev"
}

variable "function_zip" {
  description = "The store function's bundle, built by this repository (tests/conftest.py here)."
  type        = string
}

provider "aws" {
  region                      = var.region
  skip_credentials_validation = var.emulator
  skip_requesting_account_id  = var.emulator
  skip_metadata_api_check     = var.emulator
  s3_use_path_style           = var.emulator
}

locals {
  name      = "greenhouse-${var.environment_suffix}"
  rule_name = "greenhouse_${replace(var.environment_suffix, "-", "_")}_climate"
  rule_sql  = "SELECT topic(2) AS house, ts AS taken_at, temp_c AS celsius, humidity FROM 'greenhouse/+/climate' WHERE humidity <= 100 AND temp_c > -50"
}

resource "aws_dynamodb_table" "climate" {
  name         = "${local.name}-climate"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "house"
  range_key    = "taken_at"

  attribute {
    name = "house"
    type = "S"
  }

  attribute {
    name = "taken_at"
    type = "N"
  }
}

resource "aws_sqs_queue" "dead" {
  name = "${local.name}-dead"
}

resource "aws_sqs_queue" "readings" {
  name                       = "${local.name}-readings"
  visibility_timeout_seconds = 30
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead.arn
    maxReceiveCount     = 3
  })
}

data "aws_iam_policy_document" "function_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "store" {
  name               = "${local.name}-store"
  assume_role_policy = data.aws_iam_policy_document.function_assume.json
}

data "aws_iam_policy_document" "store" {
  statement {
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.climate.arn]
  }
  statement {
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.readings.arn]
  }
  statement {
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "store" {
  role   = aws_iam_role.store.id
  policy = data.aws_iam_policy_document.store.json
}

resource "aws_lambda_function" "store" {
  function_name    = "${local.name}-store"
  filename         = var.function_zip
  source_code_hash = filebase64sha256(var.function_zip)
  handler          = "store.handle"
  runtime          = "python3.12"
  role             = aws_iam_role.store.arn
  timeout          = 10

  environment {
    variables = { TABLE = aws_dynamodb_table.climate.name }
  }
}

resource "aws_lambda_event_source_mapping" "readings" {
  event_source_arn        = aws_sqs_queue.readings.arn
  function_name           = aws_lambda_function.store.arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]
}

data "aws_iam_policy_document" "rule_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["iot.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rule" {
  count              = var.enable_iot_rule ? 1 : 0
  name               = "${local.name}-rule"
  assume_role_policy = data.aws_iam_policy_document.rule_assume.json
}

resource "aws_iam_role_policy" "rule" {
  count = var.enable_iot_rule ? 1 : 0
  role  = aws_iam_role.rule[0].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sqs:SendMessage", Resource = aws_sqs_queue.readings.arn }]
  })
}

resource "aws_iot_topic_rule" "climate" {
  count       = var.enable_iot_rule ? 1 : 0
  name        = local.rule_name
  enabled     = true
  sql         = local.rule_sql
  sql_version = "2016-03-23"

  sqs {
    queue_url  = aws_sqs_queue.readings.id
    role_arn   = aws_iam_role.rule[0].arn
    use_base64 = false
  }
}

output "climate_table" {
  value = aws_dynamodb_table.climate.name
}

output "readings_queue_url" {
  value = aws_sqs_queue.readings.id
}

output "dead_letter_queue_url" {
  value = aws_sqs_queue.dead.id
}

output "store_function" {
  value = aws_lambda_function.store.function_name
}

output "rule_name" {
  value = local.rule_name
}

output "rule_sql" {
  value = local.rule_sql
}
