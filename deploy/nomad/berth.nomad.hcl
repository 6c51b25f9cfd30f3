# Berth on Nomad with the Docker driver, registered in Consul with Traefik tags.
#   nomad job run deploy/nomad/berth.nomad.hcl
# Needs on the client: a host volume named "registry" (client { host_volume "registry" {
# path = "/srv/registry" read_only = false } }) whose directory is owned by 65532:65532, the
# image's user. See docs/deployment.md.

variable "image" {
  type        = string
  default     = "registry.example.com/berth/berth:0.1.0"
  description = "The Berth image, built from the repository's Dockerfile."
}

variable "host" {
  type        = string
  default     = "registry.example.com"
  description = "The host name Traefik routes to Berth."
}

job "berth" {
  datacenters = ["dc1"]
  type        = "service"

  group "registry" {
    # One writer per filesystem volume.
    count = 1

    network {
      port "http" {
        to = 5000
      }
      port "metrics" {
        to = 5001
      }
    }

    volume "registry" {
      type      = "host"
      source    = "registry"
      read_only = false
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    service {
      name     = "berth"
      provider = "consul"
      port     = "http"
      tags = [
        "traefik.enable=true",
        "traefik.http.routers.berth.rule=Host(`${var.host}`)",
        "traefik.http.routers.berth.entrypoints=websecure",
        "traefik.http.routers.berth.tls=true",
        "traefik.http.routers.berth.tls.certresolver=letsencrypt",
        "traefik.http.services.berth.loadbalancer.server.scheme=http",
      ]

      # The registry API answers end to end. With auth.htpasswd or auth.token in config.yml,
      # /v2/ answers 401, which Consul counts as critical: delete this check then and keep the
      # /readyz one below.
      check {
        name     = "registry API /v2/"
        type     = "http"
        path     = "/v2/"
        interval = "10s"
        timeout  = "3s"
      }

      # Readiness: storage reachable and the server accepting requests (200 with or without auth).
      check {
        name     = "berth /readyz"
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "3s"
      }
    }

    service {
      name     = "berth-metrics"
      provider = "consul"
      port     = "metrics"
      tags     = ["prometheus"]
    }

    task "berth" {
      driver = "docker"

      config {
        image           = var.image
        ports           = ["http", "metrics"]
        args            = ["serve", "/local/config.yml"]
        readonly_rootfs = true
        cap_drop        = ["all"]
        security_opt    = ["no-new-privileges"]
      }

      volume_mount {
        volume      = "registry"
        destination = "/var/lib/registry"
        read_only   = false
      }

      # registry:2's config.yml; REGISTRY_* variables in `env` override single keys.
      template {
        destination = "local/config.yml"
        change_mode = "signal"
        # Berth re-reads its configuration on SIGHUP.
        change_signal = "SIGHUP"
        data          = <<-YAML
          version: 0.1
          log:
            level: info
            formatter: json
            fields:
              service: registry
          storage:
            filesystem:
              rootdirectory: /var/lib/registry
            delete:
              enabled: true
          http:
            addr: :5000
            host: https://${var.host}
            headers:
              X-Content-Type-Options: [nosniff]
            debug:
              addr: :5001
              prometheus:
                enabled: true
                path: /metrics
        YAML
      }

      # SIGTERM, then http.draintimeout (30 s by default) for in-flight requests.
      kill_signal  = "SIGTERM"
      kill_timeout = "40s"

      resources {
        cpu        = 500
        memory     = 256
        memory_max = 1024
      }
    }
  }
}
