# Optional VPC (var.create_network) for Dataflow workers without public IPs: a regional subnet
# with Private Google Access (Google APIs without an external address), the worker-to-worker
# rule Dataflow needs, and a logged deny-all for everything else coming in.
# Pass it to Beam as --subnetwork=regions/REGION/subnetworks/SUBNET --no_use_public_ips.
# Peering Vertex AI jobs into it (private services access) is not set up here.

resource "google_compute_network" "vpc" {
  count = var.create_network ? 1 : 0

  project                 = var.project_id
  name                    = local.prefix
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"

  depends_on = [google_project_service.enabled]
}

resource "google_compute_subnetwork" "workers" {
  count = var.create_network ? 1 : 0

  project                  = var.project_id
  name                     = "${local.prefix}-${var.region}"
  region                   = var.region
  network                  = google_compute_network.vpc[0].id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Dataflow workers exchange shuffle data on TCP 12345-12346; Dataflow tags them "dataflow".
resource "google_compute_firewall" "dataflow_workers" {
  count = var.create_network ? 1 : 0

  project     = var.project_id
  name        = "${local.prefix}-dataflow-workers"
  network     = google_compute_network.vpc[0].id
  direction   = "INGRESS"
  priority    = 1000
  source_tags = ["dataflow"]
  target_tags = ["dataflow"]

  allow {
    protocol = "tcp"
    ports    = ["12345-12346"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# The VPC's implied deny-ingress rule logs nothing; this one is the same rule, logged.
resource "google_compute_firewall" "deny_ingress" {
  count = var.create_network ? 1 : 0

  project       = var.project_id
  name          = "${local.prefix}-deny-ingress"
  network       = google_compute_network.vpc[0].id
  direction     = "INGRESS"
  priority      = 65534
  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}
