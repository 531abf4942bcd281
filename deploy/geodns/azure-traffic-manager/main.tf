# Azure Traffic Manager for the reference topology (deploy/geodns/topology.json): four regions of two zones, one
# Meridian with its own public address per zone. See deploy/geodns/azure-traffic-manager.md for the reasoning.
#
#   appwrite.example.com  CNAME → meridian-appwrite.trafficmanager.net     (at your DNS host, see the output)
#     parent profile, Performance: one nested endpoint per region, placed at the nearest Azure region
#       └─ child profile per region, Weighted: one external endpoint per zone, equal weights
#            └─ endpoint monitoring   GET http://<zone address>:8081/readyz, every 10 s, 3 failures
#
# Needs the hashicorp/azurerm provider 3.x or newer and an existing resource group.

terraform {
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 3.0"
    }
  }
}

provider "azurerm" {
  features {}
}

variable "resource_group_name" {
  description = "Resource group that holds the Traffic Manager profiles"
  type        = string
}

locals {
  # Traffic Manager names are global: <relative_name>.trafficmanager.net.
  relative_name = "meridian-appwrite"

  # probe.port in examples/meridian.yaml: the listener that serves only /readyz and /healthz.
  probe_port = 8081
  probe_path = "/readyz"

  # TTL of every profile's answers. The CNAME at your DNS host never changes and can keep a long TTL.
  ttl = 30

  # Fast probing: every 10 s, 5 s timeout; 2 tolerated failures, so the 3rd consecutive failure degrades the endpoint
  # after about 30 s. shutdown.drainDelay must be at least that.
  interval_in_seconds          = 10
  timeout_in_seconds           = 5
  tolerated_number_of_failures = 2

  # Region → the nearest Azure region (its place in the performance latency table) and the public address of each
  # zone's Meridian.
  regions = {
    "us-west" = {
      endpoint_location = "West US 2"
      zones = {
        "az-1" = "192.0.2.11"
        "az-3" = "192.0.2.13"
      }
    }
    "us-east" = {
      endpoint_location = "East US"
      zones = {
        "az-1" = "192.0.2.21"
        "az-3" = "192.0.2.23"
      }
    }
    "eu-north" = {
      endpoint_location = "Sweden Central"
      zones = {
        "az-1" = "198.51.100.11"
        "az-3" = "198.51.100.13"
      }
    }
    "eu-south" = {
      endpoint_location = "Italy North"
      zones = {
        "az-1" = "203.0.113.11"
        "az-3" = "203.0.113.13"
      }
    }
  }

  # One entry per Meridian: "us-west-az-1" => { region, zone, ip }.
  endpoints = merge([
    for region, r in local.regions : {
      for zone, ip in r.zones : "${region}-${zone}" => { region = region, zone = zone, ip = ip }
    }
  ]...)
}

# The public answer: the region with the lowest latency from the resolver. A region whose child profile has no
# healthy endpoint left is skipped and the next best region answers.
resource "azurerm_traffic_manager_profile" "parent" {
  name                   = local.relative_name
  resource_group_name    = var.resource_group_name
  traffic_routing_method = "Performance"

  dns_config {
    relative_name = local.relative_name
    ttl           = local.ttl
  }

  # Required on every profile. Nested endpoints take their health from the child profile, so this only matters if
  # you ever add an external endpoint here directly; it matches the children.
  monitor_config {
    protocol                     = "HTTP"
    port                         = local.probe_port
    path                         = local.probe_path
    expected_status_code_ranges  = ["200-200"]
    interval_in_seconds          = local.interval_in_seconds
    timeout_in_seconds           = local.timeout_in_seconds
    tolerated_number_of_failures = local.tolerated_number_of_failures
  }
}

# One profile per region: its two zones, equally weighted, each probed on its own /readyz.
resource "azurerm_traffic_manager_profile" "region" {
  for_each = local.regions

  name                   = "${local.relative_name}-${each.key}"
  resource_group_name    = var.resource_group_name
  traffic_routing_method = "Weighted"

  dns_config {
    relative_name = "${local.relative_name}-${each.key}"
    ttl           = local.ttl
  }

  monitor_config {
    protocol                     = "HTTP"
    port                         = local.probe_port
    path                         = local.probe_path
    expected_status_code_ranges  = ["200-200"]
    interval_in_seconds          = local.interval_in_seconds
    timeout_in_seconds           = local.timeout_in_seconds
    tolerated_number_of_failures = local.tolerated_number_of_failures
  }
}

resource "azurerm_traffic_manager_external_endpoint" "zone" {
  for_each = local.endpoints

  name       = each.key
  profile_id = azurerm_traffic_manager_profile.region[each.value.region].id
  target     = each.value.ip
  weight     = 1
}

resource "azurerm_traffic_manager_nested_endpoint" "region" {
  for_each = local.regions

  name                    = each.key
  profile_id              = azurerm_traffic_manager_profile.parent.id
  target_resource_id      = azurerm_traffic_manager_profile.region[each.key].id
  endpoint_location       = each.value.endpoint_location
  minimum_child_endpoints = 1
  weight                  = 1
}

output "cname_target" {
  description = "Point appwrite.example.com here with a CNAME at your DNS host"
  value       = azurerm_traffic_manager_profile.parent.fqdn
}
