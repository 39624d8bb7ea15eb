# Optional CMEK (var.cmek_enabled): one key encrypts the pipeline root bucket, both Artifact
# Registry repositories and the request-log dataset; Vertex AI jobs and models and Dataflow
# jobs use it through the kms_key_name output. Each service encrypts with its own service
# agent, so each agent gets encrypter/decrypter on this key only.

locals {
  kms_key_id = one(google_kms_crypto_key.cmek[*].id)

  # Keyed by service; empty unless var.cmek_enabled (the lookups below have no instances then).
  kms_service_agents = merge(
    { for d in data.google_storage_project_service_account.gcs : "storage" => d.member },
    { for d in data.google_bigquery_default_service_account.bq : "bigquery" => d.member },
    { for service, agent in google_project_service_identity.agents : service => "serviceAccount:${agent.email}" },
    # These two exist once their API is on, and are addressed by project number.
    var.cmek_enabled ? {
      dataflow = "serviceAccount:service-${data.google_project.this.number}@dataflow-service-producer-prod.iam.gserviceaccount.com"
      compute  = "serviceAccount:service-${data.google_project.this.number}@compute-system.iam.gserviceaccount.com" # Dataflow worker disks
    } : {},
  )
}

resource "google_kms_key_ring" "cmek" {
  count = var.cmek_enabled ? 1 : 0

  project  = var.project_id
  name     = local.prefix
  location = var.region # resources can only use a key in their own location

  depends_on = [google_project_service.enabled]
}

resource "google_kms_crypto_key" "cmek" {
  count = var.cmek_enabled ? 1 : 0

  name            = "${local.prefix}-data"
  key_ring        = google_kms_key_ring.cmek[0].id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.kms_rotation_period

  # Destroying the key makes everything encrypted with it unreadable.
  lifecycle {
    prevent_destroy = true
  }
}

# These look the agents up (and create them if needed), so they exist before the grant.
data "google_storage_project_service_account" "gcs" {
  count   = var.cmek_enabled ? 1 : 0
  project = var.project_id
}

data "google_bigquery_default_service_account" "bq" {
  count   = var.cmek_enabled ? 1 : 0
  project = var.project_id
}

resource "google_project_service_identity" "agents" {
  for_each = var.cmek_enabled ? { aiplatform = "aiplatform.googleapis.com", artifactregistry = "artifactregistry.googleapis.com" } : {}
  provider = google-beta

  project = var.project_id
  service = each.value

  depends_on = [google_project_service.enabled]
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = local.kms_service_agents

  crypto_key_id = local.kms_key_id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}
