# Outputs named after the config keys they fill (vertex.project -> vertex_project). The config
# is strict about its keys, so `config_yaml` holds only keys it has today; the others (CMEK key,
# network) are for the Beam args and for config keys still to come.

output "vertex_project" {
  description = "vertex.project"
  value       = var.project_id
}

output "vertex_region" {
  description = "vertex.region"
  value       = var.region
}

output "vertex_pipeline_root" {
  description = "vertex.pipeline_root (also _PIPELINE_ROOT)"
  value       = local.pipeline_root
}

output "vertex_service_account" {
  description = "vertex.service_account: pipeline steps, custom training jobs and Dataflow workers (also _SERVICE_ACCOUNT)"
  value       = google_service_account.pipelines.email
}

output "image_repository" {
  description = "Docker repository for the project image (vertex.image = <this>/<image>@sha256:...; also _REPOSITORY)"
  value       = local.image_repository
}

output "kfp_repository_url" {
  description = "KFP template repository, https://REGION-kfp.pkg.dev/PROJECT/REPO (also _KFP_REPOSITORY)"
  value       = local.kfp_repository_url
}

output "serving_bigquery_log_table" {
  description = "serving.bigquery_log_table, bq://PROJECT.DATASET.TABLE"
  value       = local.request_log_table_uri
}

output "monitoring_alert_emails" {
  description = "monitoring.alert_emails"
  value       = var.alert_emails
}

output "kms_key_name" {
  description = "CMEK key for Vertex AI encryption_spec and Dataflow --dataflow_kms_key (null without CMEK)"
  value       = local.kms_key_id
}

output "network_name" {
  description = "VPC for Dataflow workers (null without create_network)"
  value       = one(google_compute_network.vpc[*].name)
}

output "subnetwork_name" {
  description = "Subnet for Dataflow workers: --subnetwork=regions/REGION/subnetworks/<this> (null without create_network)"
  value       = one(google_compute_subnetwork.workers[*].name)
}

output "service_accounts" {
  description = "E-mail of each role's service account"
  value       = { for role, account in local.service_accounts : role => account.email }
}

output "cloudbuild_substitutions" {
  description = "Substitutions each Cloud Build trigger passes to cloudbuild.yaml"
  value       = { for name, trigger in google_cloudbuild_trigger.ci : name => trigger.substitutions }
}

output "schedules" {
  description = "Cloud Scheduler job of each scheduled pipeline"
  value       = { for kind, job in google_cloud_scheduler_job.pipeline : kind => job.id }
}

output "config_yaml" {
  description = "The config keys this stack decides, to paste into configs/<use case>.yaml"
  value = yamlencode({
    vertex = {
      project         = var.project_id
      region          = var.region
      pipeline_root   = local.pipeline_root
      service_account = google_service_account.pipelines.email
    }
    serving = {
      bigquery_log_table = local.request_log_table_uri
    }
    monitoring = {
      alert_emails = var.alert_emails
    }
  })
}
