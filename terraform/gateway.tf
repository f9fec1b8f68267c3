# API Gateway in front of the HTTP functions (partners and apps call only the gateway; the
# functions are deployed with --no-allow-unauthenticated and accept only the gateway's ID token).
#
# The gateway does not authenticate callers itself: API keys and Firebase ID tokens are checked
# by the functions. With a backend jwt_audience the gateway replaces `Authorization` with its own
# ID token and forwards the caller's header as `X-Forwarded-Authorization`; `X-API-Key` passes
# unchanged (docs/DEPLOY.md).
#
# Cloud Armor is not applicable: it attaches to load balancer backends, not to API Gateway.

locals {
  openapi = templatefile("${path.module}/openapi.yaml", {
    title           = "Proveniq Ledger API"
    write_event_url = local.function_urls["write_event"]
    admin_url       = local.function_urls["admin"]
    get_proof_url   = local.function_urls["get_proof"]
  })
}

resource "google_api_gateway_api" "ledger" {
  provider     = google-beta
  api_id       = "proveniq-ledger"
  display_name = "Proveniq Ledger"
  depends_on   = [google_project_service.apis]
}

resource "google_api_gateway_api_config" "ledger" {
  provider             = google-beta
  api                  = google_api_gateway_api.ledger.api_id
  api_config_id_prefix = "proveniq-"
  display_name         = "Proveniq Ledger ${substr(sha256(local.openapi), 0, 12)}"

  openapi_documents {
    document {
      path     = "openapi.yaml"
      contents = base64encode(local.openapi)
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.gateway.email
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "ledger" {
  provider     = google-beta
  gateway_id   = "proveniq-ledger"
  display_name = "Proveniq Ledger"
  api_config   = google_api_gateway_api_config.ledger.id
  region       = local.gateway_region
}

# The API's own managed service (needed for the gateway's metrics, quotas and API keys).
resource "google_project_service" "gateway_managed_service" {
  project            = var.project_id
  service            = google_api_gateway_api.ledger.managed_service
  disable_on_destroy = false
}
