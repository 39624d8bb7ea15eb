locals {
  pipeline_root_prefix = "pipelines"
  # vertex.pipeline_root: Vertex writes every run's artifacts here, Dataflow its temp files
  # (`<pipeline_root>/beam-temp`), and registered models keep their artifacts here.
  pipeline_root = "gs://${google_storage_bucket.pipeline_root.name}/${local.pipeline_root_prefix}"
}

resource "google_storage_bucket" "pipeline_root" {
  #checkov:skip=CKV_GCP_62:Usage-log buckets are legacy; object access is recorded by Cloud Audit Logs (Data Access), which the project's audit policy owns, not this module.
  name     = "${var.project_id}-${local.prefix}"
  location = var.region
  project  = var.project_id

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = true
  }

  # Run artifacts (and the model artifacts registered from them) expire after the retention:
  # keep it longer than you may want to redeploy or roll back to an old model version.
  lifecycle_rule {
    condition {
      age            = var.pipeline_root_retention_days
      matches_prefix = ["${local.pipeline_root_prefix}/"]
    }
    action {
      type = "Delete"
    }
  }

  # Versioning keeps overwritten and deleted objects; they go after 30 days.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  dynamic "encryption" {
    for_each = var.cmek_enabled ? [local.kms_key_id] : []
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.service_agents]
}
