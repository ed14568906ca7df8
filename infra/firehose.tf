locals {
  archive_stream_name = "${local.name}-archive"
  # Built from the name, not read from the stream: the role it trusts is created before it.
  archive_stream_arn = "arn:${local.partition}:firehose:${var.region}:${local.account_id}:deliverystream/${local.archive_stream_name}"
}

resource "aws_kinesis_firehose_delivery_stream" "archive" {
  name        = local.archive_stream_name
  destination = "extended_s3"

  server_side_encryption {
    enabled  = true
    key_type = "CUSTOMER_MANAGED_CMK"
    key_arn  = aws_kms_key.main.arn
  }

  extended_s3_configuration {
    role_arn            = aws_iam_role.firehose.arn
    bucket_arn          = aws_s3_bucket.archive.arn
    prefix              = "raw/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"
    error_output_prefix = "errors/!{firehose:error-output-type}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
    buffering_size      = 5
    buffering_interval  = 60
    compression_format  = "GZIP"
    kms_key_arn         = aws_kms_key.main.arn
  }

  lifecycle {
    # AWS fills in "UTC" when unset; ministack returns nothing, which would show as a diff forever.
    ignore_changes = [extended_s3_configuration[0].custom_time_zone]
  }
}

# Firehose passes the stream's account as the external id (AWS's documented trust policy); the
# stream's ARN is checked where Firehose supplies it (IfExists): AWS does not document it here.
data "aws_iam_policy_document" "firehose_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["firehose.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLikeIfExists"
      variable = "aws:SourceArn"
      values   = [local.archive_stream_arn]
    }
  }
}

resource "aws_iam_role" "firehose" {
  name               = "${local.name}-firehose"
  assume_role_policy = data.aws_iam_policy_document.firehose_assume.json
}

data "aws_iam_policy_document" "firehose" {
  statement {
    sid = "WriteArchive"
    actions = [
      "s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject",
      "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:PutObject",
    ]
    resources = [aws_s3_bucket.archive.arn, "${aws_s3_bucket.archive.arn}/*"]
  }

  statement {
    sid       = "EncryptArchive"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "firehose" {
  name   = "archive"
  role   = aws_iam_role.firehose.id
  policy = data.aws_iam_policy_document.firehose.json
}
