# Cloudflare Load Balancing for the reference topology (deploy/geodns/topology.json): four regions of two zones, one
# Meridian with its own public address per zone. See deploy/geodns/cloudflare-load-balancing.md for the reasoning.
#
#   appwrite.example.com  DNS-only load balancer, proximity steering
#     └─ one pool per region, at the region's coordinates (the ones Meridian itself uses)
#          └─ one origin per zone, each checked on its own by the shared monitor:
#             GET http://<zone address>:8081/readyz from three monitor regions, every 15 s, 2 failures
#
# Written for the cloudflare/cloudflare provider 5.x (attribute syntax). Load Balancing must be enabled on the account.

terraform {
  required_providers {
    cloudflare = {
      source  = "cloudflare/cloudflare"
      version = ">= 5.0"
    }
  }
}

variable "account_id" {
  description = "Cloudflare account that owns the monitor and the pools"
  type        = string
}

variable "zone_id" {
  description = "Cloudflare zone for example.com"
  type        = string
}

locals {
  name = "appwrite.example.com"

  # probe.port in examples/meridian.yaml: the listener that serves only /readyz and /healthz.
  probe_port = 8081
  probe_path = "/readyz"

  # TTL of the load balancer's answers (DNS-only mode; proxied load balancers have none).
  ttl = 30

  # 15 s × 2 = 30 s before an origin leaves the answer: shutdown.drainDelay must be at least that. The shortest
  # interval depends on the plan; with a longer one, raise drainDelay to match.
  interval         = 15
  timeout          = 5
  retries          = 1
  consecutive_down = 2
  consecutive_up   = 2

  # Three monitor regions, so that a majority always exists.
  check_regions = ["WNAM", "ENAM", "WEU"]

  # Region → the coordinates of its `location` in examples/meridian.yaml (geo-data/regions.json) and the public
  # address of each zone's Meridian.
  regions = {
    "us-west" = {
      latitude  = 45.84
      longitude = -119.7
      zones = {
        "az-1" = "192.0.2.11"
        "az-3" = "192.0.2.13"
      }
    }
    "us-east" = {
      latitude  = 39.04
      longitude = -77.49
      zones = {
        "az-1" = "192.0.2.21"
        "az-3" = "192.0.2.23"
      }
    }
    "eu-north" = {
      latitude  = 59.33
      longitude = 18.07
      zones = {
        "az-1" = "198.51.100.11"
        "az-3" = "198.51.100.13"
      }
    }
    "eu-south" = {
      latitude  = 45.46
      longitude = 9.19
      zones = {
        "az-1" = "203.0.113.11"
        "az-3" = "203.0.113.13"
      }
    }
  }

  # Order of the pools when Cloudflare cannot place a query: the fallback first.
  pool_order = ["us-east", "us-west", "eu-south", "eu-north"]
}

resource "cloudflare_load_balancer_monitor" "readyz" {
  account_id       = var.account_id
  description      = "Meridian /readyz on the probe listener"
  type             = "http"
  method           = "GET"
  port             = local.probe_port
  path             = local.probe_path
  expected_codes   = "200"
  follow_redirects = false
  interval         = local.interval
  timeout          = local.timeout
  retries          = local.retries
  consecutive_down = local.consecutive_down
  consecutive_up   = local.consecutive_up
}

# A region's pool stays healthy while one of its two zones is; below that the next nearest pool answers.
resource "cloudflare_load_balancer_pool" "region" {
  for_each = local.regions

  account_id      = var.account_id
  name            = "meridian-${each.key}"
  latitude        = each.value.latitude
  longitude       = each.value.longitude
  monitor         = cloudflare_load_balancer_monitor.readyz.id
  check_regions   = local.check_regions
  minimum_origins = 1

  origins = [
    for zone, ip in each.value.zones : {
      name    = "${each.key}-${zone}"
      address = ip
      enabled = true
      weight  = 1
    }
  ]
}

resource "cloudflare_load_balancer" "appwrite" {
  zone_id         = var.zone_id
  name            = local.name
  proxied         = false
  ttl             = local.ttl
  steering_policy = "proximity"

  # DNS-only answers: place the client by EDNS Client Subnet when the resolver sends it, else by the resolver.
  location_strategy = {
    mode       = "resolver_ip"
    prefer_ecs = "always"
  }

  default_pools = [for region in local.pool_order : cloudflare_load_balancer_pool.region[region].id]
  fallback_pool = cloudflare_load_balancer_pool.region[local.pool_order[0]].id
}
