# Raw archive (written by Firehose under raw/) and quarantine (written by the processor
# under quarantine/, one object per rejected record with its reason).
resource "aws_s3_bucket" "archive" {
  #checkov:skip=CKV_AWS_18:Access logs need a second bucket per stack; CloudTrail data events cover audits where required.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a per-deployment DR decision, not part of the testbed stack.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object events; the processor writes the quarantine itself.
  bucket        = "${local.name}-archive-${local.account_id}"
  force_destroy = true
}

resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket                  = aws_s3_bucket.archive.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Requests over plain HTTP are refused for everyone, Terraform and the services included. Not on an
# emulator: it serves plain HTTP, so with IAM enforced (IAM=enforce) this would refuse the
# processor's quarantine writes there; infra/tests/aws_target.tftest.hcl asserts it on AWS.
data "aws_iam_policy_document" "archive" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.archive.arn, "${aws_s3_bucket.archive.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "archive" {
  count  = var.emulator ? 0 : 1
  bucket = aws_s3_bucket.archive.id
  policy = data.aws_iam_policy_document.archive.json
  # S3 refuses concurrent changes to a bucket's access settings: one after the other.
  depends_on = [aws_s3_bucket_public_access_block.archive]
}

resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "expire-raw"
    status = "Enabled"
    filter {
      prefix = "raw/"
    }
    expiration {
      days = var.archive_expiration_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
  }

  rule {
    id     = "expire-quarantine"
    status = "Enabled"
    filter {
      prefix = "quarantine/"
    }
    expiration {
      days = var.archive_expiration_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
  }
}

# The policy became one instance per target (none on an emulator): state from before keeps it.
moved {
  from = aws_s3_bucket_policy.archive
  to   = aws_s3_bucket_policy.archive[0]
}
