locals {
  request_log_dataset = "${replace(local.prefix, "-", "_")}_request_logs"
  # Vertex AI creates this table on the first logged request (its schema is Vertex's to own).
  request_log_table = "request_response_logging"
  # serving.bigquery_log_table
  request_log_table_uri = "bq://${var.project_id}.${google_bigquery_dataset.request_logs.dataset_id}.${local.request_log_table}"
}

resource "google_bigquery_dataset" "request_logs" {
  project     = var.project_id
  dataset_id  = local.request_log_dataset
  location    = var.region
  description = "Vertex AI endpoint request-response logs, read by the monitoring pipeline"

  # Rows age out by partition; the log table itself stays.
  default_partition_expiration_ms = var.request_log_retention_days * 24 * 60 * 60 * 1000
  # Expires whole tables, the log table included: for throwaway environments only (null = never).
  default_table_expiration_ms = var.request_log_table_expiration_days == null ? null : var.request_log_table_expiration_days * 24 * 60 * 60 * 1000

  delete_contents_on_destroy = var.force_destroy

  dynamic "default_encryption_configuration" {
    for_each = var.cmek_enabled ? [local.kms_key_id] : []
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.service_agents]
}
