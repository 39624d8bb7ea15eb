locals {
  # Where Cloud Build pushes the project image (vertex.image is <image_repository>/<image>@sha256:...).
  image_repository = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  # Where Cloud Build uploads compiled pipeline templates (KFP RegistryClient host, templateUri).
  kfp_repository_url = "https://${var.region}-kfp.pkg.dev/${var.project_id}/${google_artifact_registry_repository.pipelines.repository_id}"
}

# No cleanup policy: a deployed endpoint pulls its image again whenever it scales up, and a
# compiled template pins its image by digest, so deleting "old" images breaks running things.
resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = local.prefix
  format        = "DOCKER"
  description   = "Project image: every pipeline component, Dataflow workers and the prediction server"
  kms_key_name  = var.cmek_enabled ? local.kms_key_id : null

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_artifact_registry_repository" "pipelines" {
  project       = var.project_id
  location      = var.region
  repository_id = "${local.prefix}-pipelines"
  format        = "KFP"
  description   = "Compiled KFP pipeline templates (training, prediction, monitoring)"
  kms_key_name  = var.cmek_enabled ? local.kms_key_id : null

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.service_agents]
}
