locals {
  # Every name derives from this, so dev and prod can share a project without colliding.
  prefix = "${var.name_prefix}-${var.environment}"

  labels = merge(
    {
      app         = var.name_prefix
      environment = var.environment
      managed-by  = "terraform"
    },
    var.labels,
  )

  services = concat(
    [
      "aiplatform.googleapis.com",
      "artifactregistry.googleapis.com",
      "bigquery.googleapis.com",
      "cloudbuild.googleapis.com",
      "cloudresourcemanager.googleapis.com", # project IAM bindings go through it
      "cloudscheduler.googleapis.com",
      "compute.googleapis.com",
      "dataflow.googleapis.com",
      "iam.googleapis.com",
      "monitoring.googleapis.com",
      "storage.googleapis.com",
    ],
    var.cmek_enabled ? ["cloudkms.googleapis.com"] : [],
  )
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service" "enabled" {
  for_each = toset(local.services)

  project = var.project_id
  service = each.value
  # Turning an API off on destroy would break anything else in the project that uses it.
  disable_on_destroy = false
}
