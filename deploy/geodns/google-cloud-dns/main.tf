# Google Cloud DNS for the reference topology (deploy/geodns/topology.json): four regions of two zones, one Meridian
# with its own public address per zone. See deploy/geodns/google-cloud-dns.md for the reasoning.
#
#   appwrite.example.com  A, geolocation routing policy: one item per region, placed at the nearest Google Cloud region
#     └─ health-checked external endpoints: the two zone addresses of the region
#          └─ one global health check, run against every address on its own:
#             GET http://<zone address>:8081/readyz from three source regions, every 30 s, 2 failures
#
# Needs the hashicorp/google provider 5.x or newer (external endpoints and source_regions) and an existing public
# managed zone for example.com.

terraform {
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

variable "project" {
  description = "Google Cloud project that holds the managed zone"
  type        = string
}

variable "managed_zone" {
  description = "Name of the Cloud DNS managed zone for example.com."
  type        = string
}

locals {
  name = "appwrite.example.com."

  # probe.port in examples/meridian.yaml: the listener that serves only /readyz and /healthz.
  probe_port = 8081
  probe_path = "/readyz"

  ttl = 30

  # A health check with source regions takes exactly three of them and checks at most every 30 s.
  # 30 s × 2 = 60 s before an address leaves the answer: shutdown.drainDelay must be at least that.
  check_interval_sec  = 30
  timeout_sec         = 5
  unhealthy_threshold = 2
  healthy_threshold   = 2
  source_regions      = ["us-west1", "us-east4", "europe-west1"]

  # Region → the nearest Google Cloud region (the geolocation item's location) and the public address of each zone's
  # Meridian.
  regions = {
    "us-west" = {
      location = "us-west1"
      zones = {
        "az-1" = "192.0.2.11"
        "az-3" = "192.0.2.13"
      }
    }
    "us-east" = {
      location = "us-east4"
      zones = {
        "az-1" = "192.0.2.21"
        "az-3" = "192.0.2.23"
      }
    }
    "eu-north" = {
      location = "europe-north2"
      zones = {
        "az-1" = "198.51.100.11"
        "az-3" = "198.51.100.13"
      }
    }
    "eu-south" = {
      location = "europe-west8"
      zones = {
        "az-1" = "203.0.113.11"
        "az-3" = "203.0.113.13"
      }
    }
  }
}

# Cloud DNS runs this check against each health-checked address separately. Google health checks pass on 200 only.
resource "google_compute_health_check" "meridian" {
  project = var.project
  name    = "meridian-readyz"

  check_interval_sec  = local.check_interval_sec
  timeout_sec         = local.timeout_sec
  unhealthy_threshold = local.unhealthy_threshold
  healthy_threshold   = local.healthy_threshold
  source_regions      = local.source_regions

  http_health_check {
    port         = local.probe_port
    request_path = local.probe_path
  }
}

# The answer for a client is its nearest region's healthy addresses. When a region has none left, the next nearest
# region answers; geo fencing stays off so that can happen.
resource "google_dns_record_set" "appwrite" {
  project      = var.project
  managed_zone = var.managed_zone
  name         = local.name
  type         = "A"
  ttl          = local.ttl

  routing_policy {
    enable_geo_fencing = false
    health_check       = google_compute_health_check.meridian.id

    dynamic "geo" {
      for_each = local.regions
      content {
        location = geo.value.location
        health_checked_targets {
          external_endpoints = values(geo.value.zones)
        }
      }
    }
  }
}
