#!/usr/bin/env python3
"""Offline checks of the deployment artifacts in deploy/, driven by scripts/validate-deploy.sh.

Subcommands (each exits non-zero with a message naming the file on the first kind of failure):
  yaml FILE...                 every document of every file parses (PyYAML safe_load_all)
  kustomization DIR            kustomization.yaml lists every manifest in DIR and nothing missing
  configmap-config FILE OUT    writes the config.yml key of the ConfigMap in FILE to OUT
  nomad FILE OUT               parses the job with python-hcl2 (HCL2 syntax only, not Nomad's own
                               schema), checks its structure, writes its config template to OUT
  grafana FILE                 dashboard JSON: panels well formed; every metric and label that
                               every query uses is one Berth exports (METRICS below)
  grafana-crosscheck FILE METRICS_TEXT
                               informational: dashboard metrics absent from a real /metrics scrape
  helm-lint CHART              `helm lint` through Helm's Go library (PyPI helm-sdkpy) on the chart
                               with several sets of values, plus one set that must fail
  helm-render CHART OUT        `helm template` offline through Helm's engine (PyPI helm-python-sdk):
                               each value set of RENDER_VARIANTS rendered and checked object by
                               object (replicas, strategy, PDB, env and Secret references, probes,
                               volumes, config.yml), its manifests, config.yml, pod environment and
                               expected effective keys written under OUT/<n>/; the sets of
                               RENDER_MUST_FAIL must stop with their message
  effective EFFECTIVE EXPECT_JSON
                               `berth config check` output: each dotted key of EXPECT_JSON has that
                               value (null: absent)
  compose-cluster RESOLVED HAPROXY_CFG OUT
                               the cluster compose file as `docker-compose config` resolved it and
                               its HAProxy config: nodes named alike, one environment but the node
                               name, only loopback ports, every node a checked backend server on
                               /readyz; each node's environment and expectations written to OUT
  ansible-upstreams INVENTORY EFFECTIVE [VARS_JSON]
                               the Ansible role's rendered config as `berth config check` printed
                               it (EFFECTIVE): one proxy.upstreams entry per container_image_mirrors
                               entry of INVENTORY, same host, URL and cache size in bytes (sizes
                               such as 20Gi parsed here independently of the role's conversion);
                               VARS_JSON: extra variables of the run (they win over INVENTORY)
  unit-drift RENDERED SHIPPED  the role's unit rendered with its defaults has exactly the
                               directives of deploy/systemd/berth.service, in the same order
"""

import argparse
import asyncio
import base64
import copy
import fractions
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile

import yaml

# Every metric Berth exports on http.debug (registry:2's names plus berth_*), with its labels.
# `kind` says which suffixes exist: histogram -> _bucket/_sum/_count, summary -> _sum/_count.
METRICS = {
    "registry_http_requests_total": ("counter", {"handler", "code", "method"}),
    "registry_http_request_duration_seconds": ("histogram", {"handler", "method"}),
    "registry_http_in_flight_requests": ("gauge", {"handler"}),
    "registry_http_request_size_bytes": ("summary", {"handler"}),
    "registry_http_response_size_bytes": ("summary", {"handler"}),
    "registry_storage_action_seconds": ("histogram", {"driver", "action"}),
    "registry_proxy_requests_total": ("counter", {"type"}),
    "registry_proxy_hits_total": ("counter", {"type"}),
    "registry_proxy_misses_total": ("counter", {"type"}),
    "registry_proxy_pulled_bytes_total": ("counter", {"type"}),
    "registry_proxy_pushed_bytes_total": ("counter", {"type"}),
    "registry_notifications_events_total": ("counter", {"type", "endpoint"}),
    "registry_notifications_pending_total": ("gauge", {"endpoint"}),
    "registry_notifications_status_total": ("counter", {"code", "endpoint"}),
    "berth_storage_bytes": ("gauge", set()),
    "berth_repositories": ("gauge", set()),
    "berth_uploads_in_progress": ("gauge", set()),
    "berth_gc_runs_total": ("counter", set()),
    "berth_gc_bytes_freed_total": ("counter", set()),
    "berth_proxy_upstream_errors_total": ("counter", {"upstream"}),
    "berth_proxy_stale_serves_total": ("counter", {"upstream"}),
    "berth_auth_failures_total": ("counter", {"reason"}),
    "berth_disk_free_bytes": ("gauge", set()),
}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
PROMQL_FUNCTIONS = {
    "abs", "absent", "avg", "avg_over_time", "ceil", "clamp_max", "clamp_min", "count",
    "count_over_time", "delta", "deriv", "floor", "histogram_quantile", "idelta", "increase",
    "irate", "label_replace", "label_values", "max", "max_over_time", "min", "min_over_time",
    "predict_linear", "quantile", "rate", "round", "scalar", "sort", "sort_desc", "stddev", "sum",
    "sum_over_time", "topk", "bottomk", "vector", "time", "query_result",
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                   "unless", "offset", "bool"}


def fail(message):
    print(f"FAIL {message}", file=sys.stderr)
    sys.exit(1)


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def cmd_yaml(args):
    for path in args.files:
        try:
            docs = load_yaml_docs(path)
        except yaml.YAMLError as e:
            fail(f"{path}: not valid YAML: {e}")
        if not docs:
            fail(f"{path}: no YAML document")
        print(f"ok   {path}: {len(docs)} document(s) parse")


def cmd_kustomization(args):
    root = pathlib.Path(args.dir)
    kust = load_yaml_docs(root / "kustomization.yaml")[0]
    listed = kust.get("resources") or []
    for name in listed:
        if not (root / name).is_file():
            fail(f"{root}/kustomization.yaml lists {name}, which does not exist")
    present = sorted(p.name for p in root.glob("*.yaml") if p.name != "kustomization.yaml")
    missing = [p for p in present if p not in listed]
    if missing:
        fail(f"{root}/kustomization.yaml does not list {', '.join(missing)}")
    namespaces = set()
    for name in listed:
        for doc in load_yaml_docs(root / name):
            if doc.get("kind") != "Namespace":
                namespaces.add((doc.get("metadata") or {}).get("namespace"))
    if len(namespaces) != 1 or None in namespaces:
        fail(f"{root}: every namespaced object should name the same namespace, found {namespaces}")
    print(f"ok   {root}/kustomization.yaml lists all {len(listed)} manifests, namespace {namespaces.pop()}")


def cmd_configmap_config(args):
    docs = load_yaml_docs(args.file)
    config = docs[0].get("data", {}).get("config.yml")
    if not config:
        fail(f"{args.file}: no data.config.yml")
    pathlib.Path(args.out).write_text(config, encoding="utf-8")
    print(f"ok   {args.file}: config.yml extracted")


def unquote(value):
    """python-hcl2 keeps the quotes of string literals."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def labelled_blocks(blocks):
    """[{'"name"': {...}}] -> [(name, body)] for labelled HCL blocks."""
    out = []
    for block in blocks or []:
        for label, body in block.items():
            out.append((unquote(label), body))
    return out


def cmd_nomad(args):
    import hcl2  # python-hcl2

    with open(args.file, encoding="utf-8") as f:
        try:
            spec = hcl2.load(f)
        except Exception as e:  # the parser raises lark errors of several types
            fail(f"{args.file}: HCL2 does not parse: {e}")
    variables = {name: unquote(body.get("default")) for name, body in labelled_blocks(spec.get("variable"))}
    jobs = labelled_blocks(spec.get("job"))
    if len(jobs) != 1:
        fail(f"{args.file}: expected one job block, found {len(jobs)}")
    job_name, job = jobs[0]
    if unquote(job.get("type")) != "service" or not job.get("datacenters"):
        fail(f"{args.file}: job {job_name} needs type = \"service\" and datacenters")
    groups = labelled_blocks(job.get("group"))
    if len(groups) != 1:
        fail(f"{args.file}: expected one group, found {len(groups)}")
    group_name, group = groups[0]
    if group.get("count") != 1:
        fail(f"{args.file}: group {group_name}: count must be 1 (one writer per filesystem volume)")
    ports = {name: body for net in group.get("network", []) for name, body in labelled_blocks(net.get("port"))}
    if ports.get("http", {}).get("to") != 5000:
        fail(f"{args.file}: network port \"http\" must map to 5000")
    services = group.get("service") or []
    main = [s for s in services if unquote(s.get("port")) == "http"]
    if not main:
        fail(f"{args.file}: no service on port \"http\"")
    service = main[0]
    if unquote(service.get("provider")) != "consul":
        fail(f"{args.file}: the http service should register in Consul")
    tags = [unquote(t) for t in service.get("tags", [])]
    for needed in ("traefik.enable=true", "traefik.http.routers.berth.rule=", "traefik.http.routers.berth.tls=true"):
        if not any(t.startswith(needed) for t in tags):
            fail(f"{args.file}: service tags lack {needed}")
    checks = {unquote(c.get("path")): c for c in service.get("check", [])}
    for path in ("/v2/", "/readyz"):
        check = checks.get(path)
        if not check or unquote(check.get("type")) != "http":
            fail(f"{args.file}: no http check on {path}")
        for key in ("interval", "timeout"):
            if not check.get(key):
                fail(f"{args.file}: check {path} has no {key}")
    tasks = labelled_blocks(group.get("task"))
    if len(tasks) != 1:
        fail(f"{args.file}: expected one task, found {len(tasks)}")
    task_name, task = tasks[0]
    if unquote(task.get("driver")) != "docker":
        fail(f"{args.file}: task {task_name} should use the docker driver")
    config = task.get("config", [{}])[0]
    if set(unquote(p) for p in config.get("ports", [])) != set(ports):
        fail(f"{args.file}: task config ports {config.get('ports')} differ from the group's {sorted(ports)}")
    vols = {name for name, _ in labelled_blocks(group.get("volume"))}
    mounts = task.get("volume_mount", [])
    if not mounts or unquote(mounts[0].get("volume")) not in vols or unquote(mounts[0].get("destination")) != "/var/lib/registry":
        fail(f"{args.file}: the task must mount the group's volume at /var/lib/registry")
    template = task.get("template", [{}])[0]
    args_list = [unquote(a) for a in config.get("args", [])]
    dest = unquote(template.get("destination", ""))
    if args_list != ["serve", "/" + dest]:
        fail(f"{args.file}: args {args_list} should be serve /{dest} (the template)")
    if unquote(template.get("change_signal")) != "SIGHUP":
        fail(f"{args.file}: template change_signal should be SIGHUP (Berth reloads on it)")
    data = unquote(template.get("data", ""))
    # The heredoc as python-hcl2 returns it: <<-YAML\n...\nYAML, indentation kept.
    match = re.match(r'^<<-?(\w+)\n(.*)\n\s*\1\s*$', data, re.S)
    if not match:
        fail(f"{args.file}: template data is not a heredoc")
    body = match.group(2)
    indent = min(len(line) - len(line.lstrip()) for line in body.splitlines() if line.strip())
    body = "\n".join(line[indent:] for line in body.splitlines()) + "\n"
    body = re.sub(r"\$\{var\.(\w+)\}", lambda m: str(variables[m.group(1)]), body)
    pathlib.Path(args.out).write_text(body, encoding="utf-8")
    print(f"ok   {args.file}: HCL2 parses; job {job_name}, group {group_name} (count 1), task {task_name} "
          f"(docker), Consul service with Traefik tags, http checks on /v2/ and /readyz, "
          f"volume at /var/lib/registry, config template extracted")


def strip_nested(text, open_ch, close_ch):
    """Removes every open_ch...close_ch span (no nesting inside them in PromQL selectors)."""
    return re.sub(re.escape(open_ch) + r"[^" + re.escape(close_ch) + r"]*" + re.escape(close_ch), " ", text)


def base_metric(name):
    """registry_x_bucket -> (registry_x, 'bucket') when registry_x is a histogram/summary."""
    if name in METRICS:
        return name, None
    for suffix, kinds in (("_bucket", {"histogram"}), ("_sum", {"histogram", "summary"}),
                          ("_count", {"histogram", "summary"})):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if base in METRICS and METRICS[base][0] in kinds:
                return base, suffix[1:]
    return None, None


def check_promql(expr, where, series_only=False):
    """Returns the problems found in one PromQL expression (series_only: a bare series selector,
    as in label_values(), where counters need no rate())."""
    problems = []
    metrics_used = {}
    # Selectors with matchers: name{label op "value", ...}
    for name, matchers in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", expr):
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
        base, suffix = base_metric(name)
        if base is None:
            problems.append(f"{where}: unknown metric {name}")
            continue
        allowed = METRICS[base][1] | TARGET_LABELS | ({"le"} if suffix == "bucket" else set())
        if labels - allowed:
            problems.append(f"{where}: {name} has no label(s) {sorted(labels - allowed)}")
        metrics_used[name] = (base, suffix)
    # Everything else: drop strings, selectors, ranges; collect by/without labels.
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', " ", expr)
    rest = strip_nested(rest, "{", "}")
    rest = strip_nested(rest, "[", "]")
    grouping = set()
    for labels in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", rest):
        grouping |= {l.strip() for l in labels.split(",") if l.strip()}
    rest = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", rest)
    for token, paren in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(?)", rest):
        if paren:
            if token not in PROMQL_FUNCTIONS:
                problems.append(f"{where}: unknown function {token}")
        elif token in PROMQL_KEYWORDS or re.fullmatch(r"[0-9eE_]+", token):
            continue
        else:
            base, suffix = base_metric(token)
            if base is None:
                problems.append(f"{where}: unknown metric {token}")
            else:
                metrics_used[token] = (base, suffix)
    if not metrics_used:
        problems.append(f"{where}: queries no metric")
    available = set(TARGET_LABELS)
    for name, (base, suffix) in metrics_used.items():
        available |= METRICS[base][1] | ({"le"} if suffix == "bucket" else set())
    if grouping - available:
        problems.append(f"{where}: groups by {sorted(grouping - available)}, which none of {sorted(metrics_used)} has")
    if "histogram_quantile" in expr:
        if not any(s == "bucket" for _, s in metrics_used.values()) or "le" not in grouping:
            problems.append(f"{where}: histogram_quantile needs a _bucket metric aggregated by le")
    for name, (base, suffix) in metrics_used.items():
        if not series_only and METRICS[base][0] == "counter" and not re.search(r"\b(rate|irate|increase)\s*\(\s*" + re.escape(name), expr):
            problems.append(f"{where}: counter {name} used without rate()/increase()")
    return problems, grouping, set(metrics_used)


def walk_panels(panels):
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def cmd_grafana(args):
    try:
        with open(args.file, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        fail(f"{args.file}: not valid JSON: {e}")
    problems = []
    for key in ("title", "uid", "panels", "schemaVersion", "templating"):
        if key not in dash:
            problems.append(f"{args.file}: no top-level {key}")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("query") != "prometheus":
        problems.append(f"{args.file}: no Prometheus datasource variable")
    for name in ("job", "instance"):
        var = variables.get(name)
        if not var:
            problems.append(f"{args.file}: no ${name} variable")
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
        if not m or m.group(2) != name:
            problems.append(f"{args.file}: variable {name}: expected label_values(..., {name})")
        else:
            problems += check_promql(m.group(1), f"variable {name}", series_only=True)[0]
    ids = set()
    used = set()
    queries = 0
    for panel in walk_panels(dash.get("panels", [])):
        where = f"panel {panel.get('id')} \"{panel.get('title')}\""
        if panel.get("id") in ids:
            problems.append(f"{where}: duplicate id")
        ids.add(panel.get("id"))
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")) or grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: bad gridPos {grid}")
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{where}: datasource is not ${{datasource}}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no queries")
        for target in targets:
            expr = target.get("expr", "")
            tw = f"{where} query {target.get('refId')}"
            if 'job=~"$job"' not in expr or 'instance=~"$instance"' not in expr:
                problems.append(f"{tw}: not filtered by $job and $instance")
            found, grouping, metrics = check_promql(expr, tw)
            problems += found
            used |= metrics
            queries += 1
            legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            if legend_labels - grouping:
                problems.append(f"{tw}: legend uses {sorted(legend_labels - grouping)}, not kept by the aggregation")
    if problems:
        for p in problems:
            print(f"FAIL {args.file}: {p}", file=sys.stderr)
        sys.exit(1)
    bases = {base_metric(m)[0] for m in used}
    print(f"ok   {args.file}: {len(ids)} panels, {queries} queries; every metric and label is one Berth "
          f"exports ({len(bases)} of {len(METRICS)} metrics used)")
    unused = sorted(set(METRICS) - bases)
    if unused:
        print(f"info metrics not on the dashboard: {', '.join(unused)}")


def cmd_grafana_crosscheck(args):
    with open(args.file, encoding="utf-8") as f:
        dash = json.load(f)
    text = pathlib.Path(args.metrics).read_text(encoding="utf-8", errors="replace")
    exposed = set(re.findall(r"^(?:# (?:HELP|TYPE) )?([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M))
    wanted = set()
    for panel in walk_panels(dash["panels"]):
        for target in panel.get("targets", []):
            wanted |= {base_metric(m)[0] for m in check_promql(target["expr"], "")[2]}
    absent = sorted(m for m in wanted if not any(e == m or e.startswith(m + "_") for e in exposed))
    print(f"info a live /metrics scrape shows {len(wanted) - len(absent)} of the {len(wanted)} metrics the dashboard uses"
          + (f"; not (yet) exposed: {', '.join(absent)}" if absent else ""))


def deep_merge(base, extra):
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# Value sets the chart is linted with: (name, values merged over values.yaml, extra files, must
# pass). Helm's lint mode turns the chart's own `fail` calls into log lines, so the failing sets
# are a values.schema.json violation and a template syntax error: they prove the run reports
# failures at all.
HELM_VARIANTS = [
    ("defaults", {}, {}, True),
    ("ingress+TLS, inline htpasswd, many upstreams, ServiceMonitor, existing claim", {
        "ingress": {"enabled": True, "host": "registry.example.org", "tls": {"enabled": True, "secretName": "reg-tls"}},
        "auth": {"htpasswd": {"enabled": True,
                              "htpasswd": "ci:$2y$05$4ZnYSH6cOGS1xk0pKUnqXu3UXrhDJtHsqeDlbkkBzqrJ7hJW0Eiqa\n"}},
        "proxy": {"upstreams": [{"host": "docker.io", "url": "https://registry-1.docker.io"},
                                {"host": "ghcr.io", "url": "https://ghcr.io"}],
                  "default": "docker.io", "private": ["team"]},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "persistence": {"existingClaim": "registry-data"},
        "extraEnv": [{"name": "REGISTRY_PROXY_UPSTREAMS_0_PASSWORD",
                      "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}}],
    }, {}, True),
    ("no persistence, no metrics, remoteurl, ingress without TLS, htpasswd from a Secret", {
        "persistence": {"enabled": False},
        "metrics": {"enabled": False},
        "proxy": {"remoteurl": "https://registry-1.docker.io"},
        "ingress": {"enabled": True, "tls": {"enabled": False}},
        "auth": {"htpasswd": {"enabled": True, "existingSecret": "my-users"}},
        "config": {"storage": {"maintenance": {"readonly": {"enabled": True}}}},
    }, {}, True),
    ("S3, 3 replicas, StatefulSet, jobsNode, chart-made S3 Secret, token signing key Secret", {
        "replicaCount": 3, "workloadKind": "StatefulSet",
        "storage": {"type": "s3", "s3": {"bucket": "registry", "regionendpoint": "http://garage.storage.svc:3900",
                                         "region": "garage", "redirect": False, "accessKey": "GK01", "secretKey": "s"}},
        "cluster": {"jobsNode": "RELEASE-NAME-berth-0"},
        "tokenSigningKey": {"existingSecret": "berth-token-key"},
        "config": {"auth": {"token": {"realm": "https://r.example.org/auth/token", "service": "r.example.org",
                                      "issuer": "r.example.org", "builtin": {"htpasswd": "/etc/berth/users"}}}},
    }, {}, True),
    ("a port that is not a number, against values.schema.json (must fail)", {"service": {"port": "http"}}, {}, False),
    ("a template with a syntax error (must fail)", {},
     {"templates/broken.yaml": "kind: ConfigMap\nname: {{ .Values.service.port\n"}, False),
]
SEVERITY = {1: "INFO", 2: "WARNING", 3: "ERROR"}


def cmd_helm_lint(args):
    import helm_sdkpy  # PyPI helm-sdkpy: Helm v4's Go library behind cffi
    from helm_sdkpy.chart import Lint

    chart = pathlib.Path(args.chart)
    base_values = load_yaml_docs(chart / "values.yaml")[0]
    failed = False
    with tempfile.TemporaryDirectory(prefix="berth-helm-") as tmp:
        # Helm's client reads and writes its caches under these.
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            os.environ[var] = os.path.join(tmp, var.lower())
        config = helm_sdkpy.Configuration(namespace="default")
        for i, (name, values, files, must_pass) in enumerate(HELM_VARIANTS):
            copy_dir = pathlib.Path(tmp) / f"v{i}" / chart.name
            shutil.copytree(chart, copy_dir)
            for rel, content in files.items():
                (copy_dir / rel).write_text(content, encoding="utf-8")
            (copy_dir / "values.yaml").write_text(yaml.safe_dump(deep_merge(base_values, values)), encoding="utf-8")
            result = asyncio.run(Lint(config).run(str(copy_dir)))
            messages = result.get("Messages") or []
            # The library returns Go errors as {}: severity and path are what survives.
            bad = [m for m in messages if m.get("Severity", 0) >= 2] + [{"Severity": 3, "Path": "(errors)"}
                                                                          for _ in (result.get("Errors") or [])]
            summary = ", ".join(f"{SEVERITY.get(m.get('Severity'), m.get('Severity'))} in {m.get('Path')}" for m in bad)
            if must_pass and bad:
                print(f"FAIL helm lint ({name}): {summary}", file=sys.stderr)
                failed = True
            elif not must_pass and not bad:
                print(f"FAIL helm lint ({name}): passed, but these values must be rejected", file=sys.stderr)
                failed = True
            else:
                print(f"ok   helm lint ({name}): " + (f"rejected as expected: {summary}" if bad else "no warnings or errors"))
    if failed:
        sys.exit(1)


# `helm template` offline: value sets rendered by Helm's own engine (helm-python-sdk, Helm v4's
# Go SDK behind a C ABI; `lookup` sees no cluster). Each is checked by render_problems below.
TOKEN_CONFIG = {"auth": {"token": {"realm": "https://registry.example.org/auth/token",
                                   "service": "registry.example.org", "issuer": "registry.example.org",
                                   "builtin": {"htpasswd": "/etc/berth/auth/htpasswd"}}}}
RENDER_VARIANTS = [
    ("defaults: one pod, filesystem on a ReadWriteOnce claim", {}),
    ("S3, replicaCount 3 (Deployment), S3 credentials and token signing key from existing Secrets", {
        "replicaCount": 3,
        "storage": {"type": "s3", "s3": {"bucket": "registry", "region": "eu-west-1", "existingSecret": "berth-s3"}},
        "tokenSigningKey": {"existingSecret": "berth-token-key"},
        "ingress": {"enabled": True, "host": "registry.example.org"},
        "config": TOKEN_CONFIG,
    }),
    ("S3 on Garage, replicaCount 3 (StatefulSet, jobsNode berth-0), chart-made S3 Secret, existing http secret", {
        "replicaCount": 3, "workloadKind": "StatefulSet",
        "storage": {"type": "s3", "s3": {"bucket": "registry", "region": "garage", "redirect": False,
                                         "regionendpoint": "http://garage.storage.svc:3900",
                                         "accessKey": "GK0123456789abcdef01234567", "secretKey": "check-secret"}},
        "httpSecret": {"existingSecret": "registry-http", "key": "secret"},
        "cluster": {"jobsNode": "berth-0", "pollInterval": "5s", "leaseDuration": "1m"},
        "podDisruptionBudget": {"minAvailable": 2},
    }),
]
RENDER_MUST_FAIL = [
    ("replicaCount 3 on the default filesystem claim", {"replicaCount": 3}, "needs storage.type: s3"),
    ("replicaCount 2 on a ReadWriteMany claim", {"replicaCount": 2, "persistence": {"accessModes": ["ReadWriteMany"]}},
     "needs storage.type: s3"),
    ("S3 without a bucket", {"storage": {"type": "s3"}}, "needs storage.s3.bucket"),
    ("S3 with an access key and no secret key", {"storage": {"type": "s3", "s3": {"bucket": "b", "accessKey": "a"}}},
     "go together"),
    ("built-in token server on S3 without a signing key Secret",
     {"replicaCount": 2, "storage": {"type": "s3", "s3": {"bucket": "b"}}, "config": TOKEN_CONFIG},
     "needs tokenSigningKey.existingSecret"),
    ("workloadKind DaemonSet (values.schema.json)", {"workloadKind": "DaemonSet"}, "workloadKind"),
    ("a cluster.jobsNode that is no node name (values.schema.json)", {"cluster": {"jobsNode": "berth 1"}}, "jobsNode"),
]
# Kinds kubernetes-validate has no schema for (a CRD's): left out of the manifests written.
CRD_KINDS = {"ServiceMonitor"}


def dig(tree, dotted):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def render_problems(name, values, objs, notes):
    """What is wrong with one rendering; also the pod's environment and the effective keys
    `berth config check` must show for it."""
    problems = []
    expect = lambda cond, msg: cond or problems.append(msg)
    kinds = {}
    for o in objs:
        kinds.setdefault(o["kind"], []).append(o)
    workloads = kinds.get("Deployment", []) + kinds.get("StatefulSet", [])
    if len(workloads) != 1 or len(kinds.get("ConfigMap", [])) != 1 or len(kinds.get("Service", [])) != 1:
        return [f"expected one workload, one ConfigMap and one Service, got {sorted(kinds)}"], {}, {}
    w, cm, svc = workloads[0], kinds["ConfigMap"][0], kinds["Service"][0]
    secrets = {o["metadata"]["name"]: o for o in kinds.get("Secret", [])}
    config = yaml.safe_load(cm["data"]["config.yml"])
    replicas = values.get("replicaCount", 1)
    s3 = dig(values, "storage.type") == "s3"
    stateful = values.get("workloadKind") == "StatefulSet"
    spec, pod = w["spec"], w["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in container.get("env") or []}
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    mounts = {m["name"]: m for m in container.get("volumeMounts") or []}
    labels = pod["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    expect(w["kind"] == ("StatefulSet" if stateful else "Deployment"), f"kind {w['kind']}")
    expect(spec["replicas"] == replicas, f"replicas {spec['replicas']}, values say {replicas}")
    expect(all(labels.get(k) == v for k, v in selector.items()), "the selector does not match the pod labels")
    expect(svc["spec"]["selector"] == selector, "the Service selects other pods than the workload")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    expect(config["http"]["addr"] == f":{ports.get('http')}", f"http.addr {config['http']['addr']} vs port {ports}")
    for probe, path in (("readinessProbe", "/readyz"), ("startupProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        expect(get.get("path") == path and get.get("port") == "http", f"{probe} is {get}, wanted GET {path} on http")
    expect(set(mounts) <= set(volumes), f"mounts without a volume: {sorted(set(mounts) - set(volumes))}")
    pdbs = kinds.get("PodDisruptionBudget", [])
    pod_env, effective = {}, {}
    node_name = f"{w['metadata']['name']}-0" if stateful else f"{w['metadata']['name']}-5d8f7c9b6-x2k4q"

    def secret_ref(var):
        """(secret name, key) of an env var from a secretKeyRef; the Secret must be rendered
        with that key, or be one the values name as existing."""
        ref = (env.get(var, {}).get("valueFrom") or {}).get("secretKeyRef")
        if not ref:
            problems.append(f"{var} is not from a secretKeyRef ({env.get(var)})")
            return None
        pod_env[var] = f"check-{ref['key']}"
        return ref["name"], ref["key"]

    if not s3:
        expect(not stateful and spec.get("strategy") == {"type": "Recreate"}, f"strategy {spec.get('strategy')}, wanted Recreate")
        pvcs = kinds.get("PersistentVolumeClaim", [])
        claim = (volumes.get("data", {}).get("persistentVolumeClaim") or {}).get("claimName")
        expect(len(pvcs) == 1 and claim == pvcs[0]["metadata"]["name"], "the data volume is not the rendered claim")
        expect(pvcs and pvcs[0]["spec"]["accessModes"] == ["ReadWriteOnce"], "the claim is not ReadWriteOnce")
        expect(dig(config, "storage.filesystem.rootdirectory") == mounts.get("data", {}).get("mountPath"),
               "storage.filesystem.rootdirectory is not the data volume's mount")
        expect(not pdbs, "a PodDisruptionBudget for one pod")
        expect("cluster" not in config and not any(k.startswith("REGISTRY_CLUSTER") for k in env),
               "a cluster section or REGISTRY_CLUSTER_* on filesystem storage")
        expect("REGISTRY_HTTP_SECRET" not in env and not secrets, "Secrets or http.secret by default")
        effective.update({"storage.s3": None, "cluster": None})
        summary = (f"{w['kind']} x{replicas} {spec['strategy']['type']}, claim {claim} (ReadWriteOnce), "
                   f"no PDB, no cluster section, no REGISTRY_* env")
        return problems, pod_env, {"summary": summary, "effective": effective}

    # S3: every pod on one bucket, a cluster node named after its pod.
    sv = values["storage"]["s3"]
    expect(not kinds.get("PersistentVolumeClaim") and "emptyDir" in volumes.get("data", {}), "a claim on S3 storage")
    expect(set(config["storage"]) - {"delete", "redirect", "maintenance", "cache"} == {"s3"},
           f"storage has {sorted(config['storage'])}")
    expect(dig(config, "storage.s3.bucket") == sv["bucket"], "storage.s3.bucket differs from the values")
    expect(dig(config, "storage.s3.regionendpoint") == sv.get("regionendpoint"), "storage.s3.regionendpoint")
    expect(dig(config, "storage.redirect.disable") is (not sv.get("redirect", True)), "storage.redirect.disable")
    cluster = config.get("cluster") or {}
    cv = values.get("cluster", {})
    expect("node" not in cluster, "cluster.node in the ConfigMap: each pod sets its own")
    expect(cluster.get("jobsnode") == cv.get("jobsNode"), f"cluster.jobsnode {cluster.get('jobsnode')}")
    expect(cluster.get("pollinterval") == cv.get("pollInterval", "2s"), "cluster.pollinterval")
    expect(cluster.get("leaseduration") == cv.get("leaseDuration", "30s"), "cluster.leaseduration")
    node_ref = dig(env.get("REGISTRY_CLUSTER_NODE", {}), "valueFrom.fieldRef.fieldPath")
    expect(node_ref == "metadata.name", f"REGISTRY_CLUSTER_NODE is not the pod name ({env.get('REGISTRY_CLUSTER_NODE')})")
    pod_env["REGISTRY_CLUSTER_NODE"] = node_name
    shown = [f"{w['kind']} x{replicas}"]
    if stateful:
        expect(spec.get("serviceName") == svc["metadata"]["name"], "serviceName is not the Service")
        pods = [f"{w['metadata']['name']}-{i}" for i in range(replicas)]
        if cv.get("jobsNode"):
            expect(cv["jobsNode"] in pods, f"jobsNode {cv['jobsNode']} is none of the pods {pods}")
            shown.append(f"jobsnode {cv['jobsNode']} (one of {pods[0]}..{pods[-1]})")
    else:
        expect(spec.get("strategy") == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
               f"strategy {spec.get('strategy')}")
        shown.append("RollingUpdate maxUnavailable 0")
    # http.secret: one Secret for every pod.
    ref = secret_ref("REGISTRY_HTTP_SECRET")
    hv = values.get("httpSecret", {})
    if ref and hv.get("existingSecret"):
        expect(ref == (hv["existingSecret"], hv.get("key", "http-secret")) and ref[0] not in secrets,
               f"REGISTRY_HTTP_SECRET from {ref}, wanted the existing {hv['existingSecret']}")
        shown.append(f"REGISTRY_HTTP_SECRET <- existing Secret {ref[0]}/{ref[1]}")
    elif ref:
        sec = secrets.get(ref[0], {})
        value = base64.b64decode((sec.get("data") or {}).get(ref[1], "")).decode()
        expect(len(value) == 64, f"the chart's http secret {ref} is not 64 generated characters")
        expect(dig(sec, "metadata.annotations") == {"helm.sh/resource-policy": "keep"}, "the http Secret is not kept")
        shown.append(f"REGISTRY_HTTP_SECRET <- Secret {ref[0]}/{ref[1]} (rendered, 64 chars, kept)")
    # S3 credentials.
    refs = [secret_ref(v) for v in ("REGISTRY_STORAGE_S3_ACCESSKEY", "REGISTRY_STORAGE_S3_SECRETKEY")]
    if all(refs):
        if sv.get("existingSecret"):
            expect({r[0] for r in refs} == {sv["existingSecret"]} and sv["existingSecret"] not in secrets,
                   f"S3 keys from {refs}, wanted the existing {sv['existingSecret']}")
            shown.append(f"S3 keys <- existing Secret {sv['existingSecret']}")
        else:
            sec = secrets.get(refs[0][0], {})
            data = sec.get("stringData") or {}
            expect(refs[0][0] == refs[1][0] and data.get(refs[0][1]) == sv["accessKey"] and data.get(refs[1][1]) == sv["secretKey"],
                   f"S3 keys from {refs}, not the chart's Secret with the values' keys")
            shown.append(f"S3 keys <- Secret {refs[0][0]} (rendered)")
    # The token signing key: the Secret mounted where auth.token.builtin.signingkey points.
    tk = values.get("tokenSigningKey", {}).get("existingSecret")
    signingkey = dig(config, "auth.token.builtin.signingkey")
    if tk:
        vol = [v for v in volumes.values() if dig(v, "secret.secretName") == tk]
        mount = vol and mounts.get(vol[0]["name"])
        items = vol and vol[0]["secret"].get("items") or []
        path = mount and items and f"{mount['mountPath']}/{items[0]['path']}"
        expect(bool(path) and path == signingkey and mount.get("readOnly"),
               f"auth.token.builtin.signingkey {signingkey} is not the mounted Secret {tk} ({path})")
        shown.append(f"token key <- Secret {tk} at {signingkey}")
    else:
        expect(signingkey is None, "a signing key path without its Secret")
    if dig(config, "auth.token.builtin"):
        # `berth config check` reads both files: here they are the host's (made by the caller).
        pod_env["REGISTRY_AUTH_TOKEN_BUILTIN_SIGNINGKEY"] = "@WORK@/signing.pem"
        pod_env["REGISTRY_AUTH_TOKEN_BUILTIN_HTPASSWD"] = "@WORK@/htpasswd"
    # Disruptions and spreading.
    if replicas > 1:
        pv = values.get("podDisruptionBudget", {})
        want = {"minAvailable": pv["minAvailable"]} if "minAvailable" in pv else {"maxUnavailable": pv.get("maxUnavailable", 1)}
        expect(len(pdbs) == 1 and pdbs[0]["apiVersion"] == "policy/v1", "no policy/v1 PodDisruptionBudget")
        if pdbs:
            got = {k: v for k, v in pdbs[0]["spec"].items() if k != "selector"}
            expect(got == want, f"PDB {got}, wanted {want}")
            expect(pdbs[0]["spec"]["selector"]["matchLabels"] == selector, "the PDB selects other pods")
            shown.append(f"PDB {next(iter(got))} {next(iter(got.values()))}")
        tsc = pod["spec"].get("topologySpreadConstraints") or []
        expect(tsc and tsc[0]["labelSelector"]["matchLabels"] == selector, "no spread over nodes")
    else:
        expect(not pdbs, "a PDB for one pod")
    expect("cluster node" in notes, "NOTES.txt does not describe the cluster")
    effective.update({"cluster.node": node_name, "cluster.jobsnode": cv.get("jobsNode"),
                      "storage.s3.bucket": sv["bucket"], "storage.filesystem": None, "http.secret": "*****"})
    return problems, pod_env, {"summary": ", ".join(shown), "effective": effective}


def cmd_helm_render(args):
    import helm_python as helm  # PyPI helm-python-sdk

    out = pathlib.Path(args.out)
    failed = False
    with helm.Chart.load(args.chart) as chart:
        for i, (name, values) in enumerate(RENDER_VARIANTS):
            try:
                rendered = chart.render(values, name="berth", namespace="registry")
            except helm.HelmError as e:
                print(f"FAIL helm template ({name}): {e}", file=sys.stderr)
                failed = True
                continue
            objs = [d for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")
                    for d in yaml.safe_load_all(text) if d]
            notes = "".join(t for p, t in rendered.items() if p.endswith("NOTES.txt"))
            problems, pod_env, info = render_problems(name, values, objs, notes)
            if problems:
                print(f"FAIL helm template ({name}): " + "; ".join(problems), file=sys.stderr)
                failed = True
                continue
            d = out / str(i)
            d.mkdir(parents=True, exist_ok=True)
            (d / "manifests.yaml").write_text(yaml.safe_dump_all([o for o in objs if o["kind"] not in CRD_KINDS]),
                                              encoding="utf-8")
            cm = next(o for o in objs if o["kind"] == "ConfigMap")
            (d / "config.yml").write_text(cm["data"]["config.yml"], encoding="utf-8")
            (d / "env").write_text("".join(f"{k}={v}\n" for k, v in pod_env.items()), encoding="utf-8")
            (d / "expect.json").write_text(json.dumps(info["effective"]), encoding="utf-8")
            (d / "name").write_text(name, encoding="utf-8")
            kinds = sorted({o["kind"] for o in objs})
            print(f"ok   helm template ({name}): {len(objs)} objects ({', '.join(kinds)}); {info['summary']}")
        for name, values, message in RENDER_MUST_FAIL:
            try:
                chart.render(values, name="berth", namespace="registry")
            except helm.HelmError as e:
                text = " ".join(str(e).split())
                if message in text:
                    print(f"ok   helm template ({name}): refused: {text[:160]}")
                else:
                    print(f"FAIL helm template ({name}): refused, but not with '{message}': {text}", file=sys.stderr)
                    failed = True
            else:
                print(f"FAIL helm template ({name}): rendered, but these values must be refused", file=sys.stderr)
                failed = True
    if failed:
        sys.exit(1)


def cmd_effective(args):
    docs = load_yaml_docs(args.effective)
    if not docs:
        fail(f"{args.effective}: empty")
    effective = docs[0]
    expect = json.loads(pathlib.Path(args.expect).read_text(encoding="utf-8"))
    wrong = [f"{k}: {dig(effective, k)!r}, wanted {v!r}" for k, v in expect.items() if dig(effective, k) != v]
    if wrong:
        fail(f"{args.effective}: " + "; ".join(wrong))
    print("ok   effective " + ", ".join(f"{k}={'(absent)' if v is None else v}" for k, v in expect.items()))


def compose_ports(service):
    """(host_ip, published, target) of each published port, in 1.29's and v2's output shapes."""
    out = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            out.append((p.get("host_ip", ""), str(p.get("published")), str(p.get("target"))))
        else:
            parts = str(p).split(":")
            out.append((parts[0] if len(parts) == 3 else "", parts[-2] if len(parts) > 1 else "", parts[-1]))
    # 1.29 prints "127.0.0.1:5000:5000/tcp".
    return [(ip, pub, target.split("/")[0]) for ip, pub, target in out]


def compose_env(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def cmd_compose_cluster(args):
    resolved = load_yaml_docs(args.resolved)[0]
    services = resolved.get("services") or {}
    nodes = sorted(n for n in services if re.fullmatch(r"berth-[0-9]+", n))
    where = args.resolved
    if len(nodes) < 2 or "haproxy" not in services:
        fail(f"{where}: expected berth-N nodes and haproxy, found {sorted(services)}")
    envs = {n: compose_env(services[n]) for n in nodes}
    base = {k: v for k, v in envs[nodes[0]].items() if k != "REGISTRY_CLUSTER_NODE"}
    for n in nodes:
        svc, env = services[n], envs[n]
        if env.get("REGISTRY_CLUSTER_NODE") != n or svc.get("hostname") != n:
            fail(f"{where}: {n}: REGISTRY_CLUSTER_NODE {env.get('REGISTRY_CLUSTER_NODE')!r} / hostname {svc.get('hostname')!r}")
        if {k: v for k, v in env.items() if k != "REGISTRY_CLUSTER_NODE"} != base:
            fail(f"{where}: {n}: its environment differs from {nodes[0]}'s in more than REGISTRY_CLUSTER_NODE")
        if compose_ports(svc):
            fail(f"{where}: {n} publishes ports: only HAProxy should")
        mounts = [str(v) if not isinstance(v, dict) else f"{v.get('source')}:{v.get('target')}" for v in svc.get("volumes") or []]
        if not any(m.split(":")[0].endswith("deploy/compose/cluster-config.yml") and ":/etc/docker/registry/config.yml" in m
                   for m in mounts):
            fail(f"{where}: {n} does not mount cluster-config.yml at /etc/docker/registry/config.yml ({mounts})")
        if svc.get("command") != ["serve", "/etc/docker/registry/config.yml"]:
            fail(f"{where}: {n}: command {svc.get('command')}")
    if not base.get("REGISTRY_HTTP_SECRET") or not base.get("REGISTRY_STORAGE_S3_BUCKET"):
        fail(f"{where}: REGISTRY_HTTP_SECRET and REGISTRY_STORAGE_S3_BUCKET must be set on every node")
    ha = services["haproxy"]
    ports = compose_ports(ha)
    if not ports or any(ip != "127.0.0.1" for ip, _, _ in ports):
        fail(f"{where}: haproxy publishes {ports}: loopback (127.0.0.1) only")
    # The HAProxy configuration: the backend's servers are exactly the nodes, health-checked on /readyz.
    cfg = pathlib.Path(args.haproxy).read_text(encoding="utf-8")
    sections, current = {}, None
    for raw in cfg.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not raw[0].isspace():
            current = tuple(line.split()[:2])
            sections[current] = []
        elif current:
            sections[current].append(line)
    frontend = [s for s in sections if s[0] == "frontend" and any(l.startswith("default_backend") for l in sections[s])]
    if len(frontend) != 1:
        fail(f"{args.haproxy}: expected one frontend with a default_backend")
    fe = sections[frontend[0]]
    backend_name = next(l.split()[1] for l in fe if l.startswith("default_backend"))
    be = sections.get(("backend", backend_name))
    if be is None:
        fail(f"{args.haproxy}: no backend {backend_name}")
    bind_ports = {l.split()[1].rsplit(":", 1)[1] for l in fe if l.startswith("bind ")}
    if not bind_ports or not bind_ports <= {t for _, _, t in ports}:
        fail(f"{args.haproxy}: the frontend binds {bind_ports}, haproxy publishes {ports}")
    if "balance roundrobin" not in be:
        fail(f"{args.haproxy}: backend {backend_name} is not round robin")
    readyz = ("option httpchk GET /readyz" in be or
              ("option httpchk" in be and any(re.fullmatch(r"http-check send meth GET uri /readyz( .*)?", l) for l in be)))
    if not readyz or "http-check expect status 200" not in be:
        fail(f"{args.haproxy}: backend {backend_name} does not health-check GET /readyz expecting 200")
    default_check = any(l.startswith("default-server") and " check" in f" {l} " for l in be)
    servers = {}
    for l in be:
        if l.startswith("server "):
            words = l.split()
            servers[words[1]] = (words[2], default_check or "check" in words[3:])
    want = {n: (f"{n}:5000", True) for n in nodes}
    if servers != want:
        fail(f"{args.haproxy}: backend servers {servers}, wanted every node checked: {want}")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for n in nodes:
        (out / f"{n}.env").write_text("".join(f"{k}={v}\n" for k, v in envs[n].items()), encoding="utf-8")
        jobs = envs[n].get("REGISTRY_CLUSTER_JOBSNODE") or None
        (out / f"{n}.expect.json").write_text(json.dumps({
            "cluster.node": n, "cluster.jobsnode": jobs, "storage.s3.bucket": base["REGISTRY_STORAGE_S3_BUCKET"],
            "storage.s3.regionendpoint": base.get("REGISTRY_STORAGE_S3_REGIONENDPOINT") or None,
            "http.secret": "*****", "storage.filesystem": None}), encoding="utf-8")
    print(f"ok   {len(nodes)} nodes ({', '.join(nodes)}): REGISTRY_CLUSTER_NODE = service = hostname, one environment "
          f"otherwise (bucket {base['REGISTRY_STORAGE_S3_BUCKET']}, one http.secret), no node port published; "
          f"haproxy on {', '.join(f'{ip}:{p}' for ip, p, _ in ports)}; backend {backend_name}: roundrobin, "
          f"GET /readyz expect 200, servers {', '.join(v[0] for v in want.values())} all checked")


# Kubernetes quantities (the registry:2 role's `size`) and Berth sizes, in bytes: an
# independent parser, so that the role's conversion in config.yml.j2 is checked, not repeated.
SIZE_UNITS = {
    "": 1, "k": 1000, "K": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4,
    "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
    "kB": 1000, "KB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3, "TB": 1000 ** 4,
    "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
}


def size_bytes(value, where):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2) not in SIZE_UNITS:
        fail(f"{where}: {value!r} is not a size this check knows")
    return int(fractions.Fraction(m.group(1)) * SIZE_UNITS[m.group(2)])


def find_key(node, key):
    """The first value of `key` anywhere in a YAML tree (inventory group or host vars)."""
    if isinstance(node, dict):
        if key in node:
            return node[key]
        for value in node.values():
            found = find_key(value, key)
            if found is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            found = find_key(value, key)
            if found is not None:
                return found
    return None


def cmd_ansible_upstreams(args):
    inventory = load_yaml_docs(args.inventory)[0]
    extra = json.loads(pathlib.Path(args.vars).read_text(encoding="utf-8")) if args.vars else {}
    setting = lambda key: extra[key] if key in extra else find_key(inventory, key)
    mirrors = setting("container_image_mirrors") or []
    if not mirrors:
        fail(f"{args.inventory}: no container_image_mirrors")
    # `berth config check` prints a comment line, then the effective configuration as YAML.
    effective = load_yaml_docs(args.effective)[0]
    proxy = effective.get("proxy") or {}
    upstreams = proxy.get("upstreams") or []
    if len(upstreams) != len(mirrors):
        fail(f"{args.effective}: {len(upstreams)} proxy.upstreams for {len(mirrors)} mirrors")
    shown = []
    for i, (mirror, upstream) in enumerate(zip(mirrors, upstreams)):
        where = f"{args.effective}: proxy.upstreams[{i}]"
        if upstream.get("host") != mirror["registry"]:
            fail(f"{where}: host {upstream.get('host')!r}, the mirror's registry is {mirror['registry']!r}")
        if upstream.get("url") != mirror["url"].rstrip("/"):
            fail(f"{where}: url {upstream.get('url')!r}, the mirror's url is {mirror['url']!r}")
        limit = (upstream.get("cache") or {}).get("maxsize")
        if mirror.get("size") in (None, ""):
            if limit is not None:
                fail(f"{where}: cache.maxsize {limit!r} for a mirror without a size")
            shown.append(f"{mirror['registry']} (no limit)")
            continue
        want = size_bytes(mirror["size"], f"{args.inventory}: {mirror['registry']} size")
        if limit is None:
            fail(f"{where}: no cache.maxsize, the mirror's size is {mirror['size']}")
        got = size_bytes(limit, f"{where}.cache.maxsize")
        if got != want:
            fail(f"{where}: cache.maxsize {limit} = {got} bytes, the mirror's size {mirror['size']} = {want} bytes")
        shown.append(f"{mirror['registry']} <- {mirror['url']} maxsize {limit} (size {mirror['size']})")
    default = setting("berth_proxy_default") or None
    if proxy.get("default") != default:
        fail(f"{args.effective}: proxy.default {proxy.get('default')!r}, wanted {default!r}")
    private = setting("berth_proxy_private") or []
    if (proxy.get("private") or []) != private:
        fail(f"{args.effective}: proxy.private {proxy.get('private')!r}, wanted {private!r}")
    total = setting("berth_proxy_cache_maxsize")
    if total:
        got = (proxy.get("cache") or {}).get("maxsize")
        if got is None or size_bytes(got, f"{args.effective}: proxy.cache.maxsize") != size_bytes(total, "berth_proxy_cache_maxsize"):
            fail(f"{args.effective}: proxy.cache.maxsize {got!r}, wanted {total}")
        shown.append(f"all together maxsize {got}")
    print(f"ok   {len(mirrors)} mirrors -> {len(upstreams)} upstreams: " + "; ".join(shown)
          + (f"; default {default}" if default else "") + (f"; private {private}" if private else ""))


def unit_directives(path):
    lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    return [l.strip() for l in lines if l.strip() and not l.lstrip().startswith(("#", ";"))]


def cmd_unit_drift(args):
    rendered, shipped = unit_directives(args.rendered), unit_directives(args.shipped)
    if rendered != shipped:
        import difflib
        diff = "\n".join(difflib.unified_diff(shipped, rendered, args.shipped, args.rendered, lineterm="", n=1))
        fail(f"{args.rendered} differs from {args.shipped} (directives only):\n{diff}")
    print(f"ok   {args.rendered}: the same {len(rendered)} directives as {args.shipped}, in the same order")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("yaml"); p.add_argument("files", nargs="+"); p.set_defaults(func=cmd_yaml)
    p = sub.add_parser("kustomization"); p.add_argument("dir"); p.set_defaults(func=cmd_kustomization)
    p = sub.add_parser("configmap-config"); p.add_argument("file"); p.add_argument("out"); p.set_defaults(func=cmd_configmap_config)
    p = sub.add_parser("nomad"); p.add_argument("file"); p.add_argument("out"); p.set_defaults(func=cmd_nomad)
    p = sub.add_parser("grafana"); p.add_argument("file"); p.set_defaults(func=cmd_grafana)
    p = sub.add_parser("grafana-crosscheck"); p.add_argument("file"); p.add_argument("metrics"); p.set_defaults(func=cmd_grafana_crosscheck)
    p = sub.add_parser("helm-lint"); p.add_argument("chart"); p.set_defaults(func=cmd_helm_lint)
    p = sub.add_parser("helm-render"); p.add_argument("chart"); p.add_argument("out"); p.set_defaults(func=cmd_helm_render)
    p = sub.add_parser("effective"); p.add_argument("effective"); p.add_argument("expect"); p.set_defaults(func=cmd_effective)
    p = sub.add_parser("compose-cluster"); p.add_argument("resolved"); p.add_argument("haproxy"); p.add_argument("out")
    p.set_defaults(func=cmd_compose_cluster)
    p = sub.add_parser("ansible-upstreams"); p.add_argument("inventory"); p.add_argument("effective")
    p.add_argument("vars", nargs="?"); p.set_defaults(func=cmd_ansible_upstreams)
    p = sub.add_parser("unit-drift"); p.add_argument("rendered"); p.add_argument("shipped"); p.set_defaults(func=cmd_unit_drift)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
