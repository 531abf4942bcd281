# Route 53 for the reference topology (deploy/geodns/topology.json): four regions of two zones, one Meridian with its
# own public address per zone. See deploy/geodns/route53.md for the reasoning behind every number here.
#
#   appwrite.example.com            geoproximity alias, one per region, evaluate_target_health = true
#     └─ <region>.appwrite.example.com   multivalue A, one per zone, each tied to its own health check
#          └─ health check             GET http://<zone address>:8081/readyz, every 10 s, 3 failures
#
# Needs the hashicorp/aws provider 5.x or newer (geoproximity_routing_policy) and an existing public hosted zone.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

variable "zone_id" {
  description = "ID of the public hosted zone for example.com"
  type        = string
}

locals {
  name = "appwrite.example.com"

  # probe.port in examples/meridian.yaml: the listener that serves only /readyz and /healthz.
  probe_port = 8081
  probe_path = "/readyz"

  # The TTL of the answers. Alias records carry no TTL of their own: clients get the multivalue records' TTL.
  ttl = 60

  # 10 s × 3 = 30 s before Route 53 stops answering with a zone: shutdown.drainDelay must be at least that.
  request_interval  = 10
  failure_threshold = 3
  checker_regions   = ["us-east-1", "us-west-2", "eu-west-1"]

  # Region → geoproximity location (the AWS region in the region's `location` in examples/meridian.yaml) and the
  # public address of each zone's Meridian.
  regions = {
    "us-west" = {
      aws_region = "us-west-2"
      zones = {
        "az-1" = "192.0.2.11"
        "az-3" = "192.0.2.13"
      }
    }
    "us-east" = {
      aws_region = "us-east-1"
      zones = {
        "az-1" = "192.0.2.21"
        "az-3" = "192.0.2.23"
      }
    }
    "eu-north" = {
      aws_region = "eu-north-1"
      zones = {
        "az-1" = "198.51.100.11"
        "az-3" = "198.51.100.13"
      }
    }
    "eu-south" = {
      aws_region = "eu-south-1"
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

# One health check per Meridian, on its probe listener. Route 53 passes any 2xx or 3xx; /readyz only ever answers 200
# (the zone can serve) or 503 (it cannot, or it is draining), so in practice the check expects 200.
resource "aws_route53_health_check" "meridian" {
  for_each = local.endpoints

  type              = "HTTP"
  ip_address        = each.value.ip
  port              = local.probe_port
  resource_path     = local.probe_path
  request_interval  = local.request_interval
  failure_threshold = local.failure_threshold
  regions           = local.checker_regions

  tags = {
    Name = "meridian-${each.key}"
  }
}

# The zones of a region answer together under the region's own name; an unhealthy zone drops out of the answer.
resource "aws_route53_record" "zone" {
  for_each = local.endpoints

  zone_id                          = var.zone_id
  name                             = "${each.value.region}.${local.name}"
  type                             = "A"
  ttl                              = local.ttl
  records                          = [each.value.ip]
  set_identifier                   = each.key
  multivalue_answer_routing_policy = true
  health_check_id                  = aws_route53_health_check.meridian[each.key].id
}

# The public name: the nearest region by geoproximity. A region whose zones are all unhealthy is skipped and the next
# nearest one answers.
resource "aws_route53_record" "region" {
  for_each = local.regions

  zone_id        = var.zone_id
  name           = local.name
  type           = "A"
  set_identifier = each.key

  geoproximity_routing_policy {
    aws_region = each.value.aws_region
  }

  alias {
    name                   = "${each.key}.${local.name}"
    zone_id                = var.zone_id
    evaluate_target_health = true
  }

  depends_on = [aws_route53_record.zone]
}
