#!/usr/bin/env bash
# Validates Ferrocast's Kubernetes manifests and Dockerfile offline, as CI does:
#   1. renders every kustomization (k8s/overlays/*, k8s/examples, k8s/tests/*/) with kubectl kustomize;
#   2. checks each rendering against the Kubernetes OpenAPI schemas with kubernetes-validate
#      --strict (unknown fields are errors), for every version in K8S_VERSIONS; a kind with no
#      schema is an error too, except the CRD kinds listed in CRD_KINDS, which get the
#      cross-reference checks of step 3 instead;
#   3. cross-references each rendering: Service, PodDisruptionBudget and NetworkPolicy selectors
#      must select a pod template, named ports and ConfigMaps must exist, the HPA's target must
#      exist, a ServiceMonitor must select a Service and name one of its ports, an Ingress's
#      backend port must exist on its Service (when that Service is in the rendering), a
#      PrometheusRule must hold named groups of rules, each with an expression and either a
#      record or an alert (an alert with a summary and a runbook annotation);
#   4. checks the edge's own invariants in each rendering with an edge pod template (required in
#      the overlays and k8s/tests/*/): FERROCAST_LISTEN and FERROCAST_INTERNAL_LISTEN stated, on
#      0.0.0.0, on two container ports; every probe an httpGet on the internal port (/healthz,
#      readiness /readyz); prometheus.io/port the internal port; no Service carrying both ports,
#      none carrying the internal one out of the cluster (LoadBalancer, NodePort, externalIPs); a
#      Service for the public port; Ingresses routing to the public port only, and then
#      FERROCAST_MAX_PENDING_PER_IP=0; ServiceMonitors scraping /metrics on the internal port; a
#      NetworkPolicy isolating the pods, admitting the public port and admitting the internal one
#      only from pods named by label (never every pod, an ipBlock or anywhere); exactly one of
#      FERROCAST_JWT_SECRET (from a Secret, at least 32 bytes where the Secret is rendered) and
#      FERROCAST_JWT_PUBLIC_KEY_FILE, since without either the edge runs in development mode on
#      loopback only;
#   5. runs checkov's Kubernetes policies on each rendering, and its Dockerfile policies on the
#      Dockerfile, skipping only the checks listed (with reasons) below;
#   6. checks that k8s/components/prometheusrule holds the rules of
#      monitoring/prometheus/ferrocast-alerts.yaml (scripts/generate-prometheusrule.sh --check).
# Prints what failed and exits 1 if anything did (2 if the tools could not be set up).
#
# Usage:
#   scripts/validate-k8s.sh [PATH...]   validate k8s/, the Dockerfile, and PATHs (extra manifests:
#                                       a YAML file, a folder of them, or a kustomization folder;
#                                       loose files get steps 2 and 5, a kustomization all five)
#   scripts/validate-k8s.sh --self-test show that validation accepts good renderings and rejects
#                                       each manifest in k8s/tests/broken-deployment.yaml and each
#                                       kustomization in k8s/tests/broken/*/ (one mistake each,
#                                       rejected with the finding its `# expect:` line names)
#
# Needs python3 (3.11) with venv and pip reaching PyPI, nothing else: the tools are installed,
# at the versions pinned in scripts/requirements-*.txt, into virtualenvs under target/k8s-venv
# (FERROCAST_K8S_VENV to move them) and reused while those files are unchanged. Renderings are
# kept in target/k8s-rendered for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Kubernetes versions to validate against: the oldest this project targets and the newest the
# pinned kubernetes-validate knows.
read -r -a K8S_VERSIONS <<<"${FERROCAST_K8S_VERSIONS:-1.33 1.37}"

# Custom resource kinds (kind apiVersion) kubernetes-validate has no schema for, and which are
# allowed anyway; the cross-reference checks cover what matters in them.
CRD_KINDS=(
  "ServiceMonitor monitoring.coreos.com/v1" # k8s/components/servicemonitor (Prometheus Operator)
  "PrometheusRule monitoring.coreos.com/v1" # k8s/components/prometheusrule (Prometheus Operator)
)

# checkov checks skipped for every rendering. Each one is a deliberate choice, not a finding:
CHECKOV_SKIPS=(
  # "CPU limits should be set": the edge deliberately has none. A CPU limit means CFS throttling,
  # and a throttled edge delays every message on every one of its connections; CPU is managed
  # through requests (which the HPA scales on) instead. Memory limits are set everywhere.
  CKV_K8S_11
  # "Image should use digest": a digest exists only once an image is pushed; the manifests carry
  # placeholders (ferrocast:latest, registry.example.com/ferrocast:0.1.0, your-worker:latest) and
  # a release pins its digest in its overlay (`images: digest:`), see k8s/README.md.
  CKV_K8S_43
  # "Image Pull Policy should be Always": IfNotPresent with immutable tags (or digests) pulls each
  # image once per node; Always would make every pod start, including autoscaling during a
  # registry outage, depend on the registry. (checkov passes this check anyway once a digest is
  # pinned.)
  CKV_K8S_15
  # "Prefer using secrets as files over secrets as environment variables": the edge and the emitter
  # take the Redis URL and the JWT secret only as flags or FERROCAST_* environment variables (no
  # file variant exists yet), so the Secret has to be passed as environment variables.
  CKV_K8S_35
)

# Extra checkov checks skipped for some renderings only, by rendering name:
declare -A CHECKOV_EXTRA_SKIPS=(
  # "Image Tag should be fixed - not latest or blank": dev runs the locally built ferrocast:latest
  # (loaded into kind/minikube by hand), and the examples are templates whose images
  # (ferrocast:latest, your-worker:latest) the reader replaces. Production keeps this check: its
  # overlay must name a fixed tag.
  [dev]=CKV_K8S_14
  [examples]=CKV_K8S_14
)
# The Dockerfile's one skip (CKV_DOCKER_2, HEALTHCHECK) is an inline `checkov:skip` comment there.

VENV_ROOT=${FERROCAST_K8S_VENV:-$ROOT/target/k8s-venv}
OUT=$ROOT/target/k8s-rendered
TOOLS_VENV=$VENV_ROOT/tools
CHECKOV_VENV=$VENV_ROOT/checkov

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

self_test=false
extra=()
for arg in "$@"; do
  case $arg in
    --self-test) self_test=true ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option: $arg" >&2; usage >&2; exit 2 ;;
    *) extra+=("$arg") ;;
  esac
done
if $self_test && [ ${#extra[@]} -gt 0 ]; then
  echo "--self-test takes no paths" >&2
  exit 2
fi

# ---------------------------------------------------------------------------------------------
# Tools

python=${PYTHON:-python3}

# Debian splits venv out of python3 itself; install it the way scripts/test.sh installs its needs.
ensure_venv_module() {
  local probe=$VENV_ROOT/.probe
  if "$python" -m venv "$probe" >/dev/null 2>&1; then
    rm -rf "$probe"
    return
  fi
  rm -rf "$probe"
  local pkg
  pkg="python$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
  echo "installing from Debian's packages: $pkg (python3 -m venv needs it)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq || return 1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >/dev/null || return 1
}

# make_venv DIR REQUIREMENTS: (re)creates DIR unless it was built from these exact requirements.
make_venv() {
  local dir=$1 req=$2 want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
    return
  fi
  echo "== installing $(basename "$req" .txt) into ${dir#"$ROOT"/}"
  rm -rf "$dir"
  # Explicit `|| return`: errexit does not apply inside `if ! setup_tools`.
  "$python" -m venv "$dir" || return 1
  "$dir/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$req" || return 1
  echo "$want" >"$dir/.requirements.sha256" # last, so a half-built venv is rebuilt next time
}

setup_tools() {
  mkdir -p "$VENV_ROOT" || return 1
  ensure_venv_module || return 1
  make_venv "$TOOLS_VENV" scripts/requirements-k8s-validate.txt || return 1
  make_venv "$CHECKOV_VENV" scripts/requirements-checkov.txt || return 1
  KUBECTL=$TOOLS_VENV/bin/kubectl
  KUBE_VALIDATE=$TOOLS_VENV/bin/kubernetes-validate
  TOOLS_PYTHON=$TOOLS_VENV/bin/python
  CHECKOV=$CHECKOV_VENV/bin/checkov
  echo "== tools: kubectl $("$KUBECTL" version --client 2>/dev/null | sed -n 's/^Client Version: //p')," \
    "kustomize $("$KUBECTL" version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p')," \
    "kubernetes-validate $("$KUBE_VALIDATE" --version), checkov $("$CHECKOV" --version 2>/dev/null)"
}

# ---------------------------------------------------------------------------------------------
# Checks. Each prints its own findings and returns non-zero on failure.

# render NAME DIR: kubectl kustomize DIR into $OUT/NAME.yaml.
render() {
  local name=$1 dir=$2
  if ! "$KUBECTL" kustomize "$dir" >"$OUT/$name.yaml" 2>"$OUT/$name.stderr"; then
    sed 's/^/    /' "$OUT/$name.stderr"
    return 1
  fi
  # kustomize's warnings (deprecations and the like) are shown, not fatal.
  [ -s "$OUT/$name.stderr" ] && sed 's/^/    kustomize: /' "$OUT/$name.stderr"
  return 0
}

# check_schema FILE: kubernetes-validate --strict against every version; a missing schema fails
# unless the kind is in CRD_KINDS.
check_schema() {
  local file=$1 args=() v k out rc=0 line kind_api allowed bad=0 noted=""
  for v in "${K8S_VERSIONS[@]}"; do args+=(-k "$v"); done
  out=$("$KUBE_VALIDATE" --strict --quiet "${args[@]}" "$file" 2>&1) || rc=$?
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    if [[ $line =~ ^WARN\ .*Couldn\'t\ find\ schema\ for\ kind\ ([^ ]+)\ with\ api\ version\ ([^ ]+)\  ]]; then
      kind_api="${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
      allowed=false
      for k in "${CRD_KINDS[@]}"; do [ "$k" = "$kind_api" ] && allowed=true; done
      if $allowed; then
        [[ " $noted " == *" ${kind_api// /@} "* ]] ||
          echo "    note: no schema for CRD kind $kind_api (allowed; cross-referenced instead)"
        noted+=" ${kind_api// /@}"
        continue
      fi
      echo "    $line"
      echo "      (no schema: a misspelt kind or apiVersion, or a CRD missing from CRD_KINDS)"
      bad=1
    else
      echo "    $line"
      [[ $line =~ ^WARN ]] && bad=1
    fi
  done <<<"$out"
  [ "$rc" -eq 0 ] && [ "$bad" -eq 0 ]
}

# check_refs FILE: cross-references inside one rendering (see the header).
check_refs() {
  "$TOOLS_PYTHON" - "$1" <<'PY'
import sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
problems = []

def ns(o):
    return o.get("metadata", {}).get("namespace", "")

def name(o):
    return "%s/%s" % (o["kind"], o["metadata"]["name"])

def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

# Pod templates: (namespace, workload, labels, containers).
templates = []
for o in docs:
    spec = o.get("spec") or {}
    if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        t = spec.get("template") or {}
    elif o["kind"] == "CronJob":
        t = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    else:
        continue
    labels = (t.get("metadata") or {}).get("labels") or {}
    containers = (t.get("spec") or {}).get("containers") or []
    templates.append((ns(o), o, labels, containers))
    sel = (spec.get("selector") or {}).get("matchLabels")
    if sel is not None and not selects(sel, labels):
        problems.append("%s: selector %s does not match its own pod template" % (name(o), sel))
    configmaps = {c["metadata"]["name"] for c in docs if c["kind"] == "ConfigMap" and ns(c) == ns(o)}
    for c in containers:
        for ef in c.get("envFrom") or []:
            ref = ef.get("configMapRef")
            if ref and not ref.get("optional") and ref["name"] not in configmaps:
                problems.append("%s: envFrom ConfigMap %s is not in this rendering" % (name(o), ref["name"]))

def pods_selected(namespace, selector):
    return [t for t in templates if t[0] == namespace and selects(selector, t[2])]

for o in docs:
    spec = o.get("spec") or {}
    kind = o["kind"]
    if kind == "Service" and spec.get("selector"):
        pods = pods_selected(ns(o), spec["selector"])
        if not pods:
            problems.append("%s: selector %s matches no pod template" % (name(o), spec["selector"]))
        for p in spec.get("ports") or []:
            tp = p.get("targetPort")
            if isinstance(tp, str) and pods and not any(
                    tp == cp.get("name") for t in pods for c in t[3] for cp in c.get("ports") or []):
                problems.append("%s: targetPort %r is not a named container port" % (name(o), tp))
    elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
        key = "selector" if kind == "PodDisruptionBudget" else "podSelector"
        sel = (spec.get(key) or {}).get("matchLabels")
        if sel and not pods_selected(ns(o), sel):
            problems.append("%s: %s %s matches no pod template" % (name(o), key, sel))
    elif kind == "HorizontalPodAutoscaler":
        ref = spec.get("scaleTargetRef") or {}
        if not any(d["kind"] == ref.get("kind") and d["metadata"]["name"] == ref.get("name")
                   and ns(d) == ns(o) for d in docs):
            problems.append("%s: scaleTargetRef %s/%s is not in this rendering"
                            % (name(o), ref.get("kind"), ref.get("name")))
    elif kind == "ServiceMonitor":
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        services = [d for d in docs if d["kind"] == "Service" and ns(d) == ns(o)
                    and selects(sel, d["metadata"].get("labels") or {})]
        if not services:
            problems.append("%s: selector %s matches no Service" % (name(o), sel))
        endpoints = spec.get("endpoints") or []
        if not endpoints:
            problems.append("%s: no endpoints" % name(o))
        for e in endpoints:
            port = e.get("port")
            if not port:
                problems.append("%s: endpoint without a named port" % name(o))
            elif services and not any(port == p.get("name") for s in services for p in s["spec"].get("ports") or []):
                problems.append("%s: port %r is not a port name of the selected Service" % (name(o), port))
            if not str(e.get("path", "/metrics")).startswith("/"):
                problems.append("%s: path %r must start with /" % (name(o), e.get("path")))
    elif kind == "PrometheusRule":
        groups = spec.get("groups") or []
        if not groups:
            problems.append("%s: no rule groups" % name(o))
        for g in groups:
            if not g.get("name") or not g.get("rules"):
                problems.append("%s: a group without a name or rules" % name(o))
            for r in g.get("rules") or []:
                what = r.get("alert") or r.get("record")
                if not what or not r.get("expr") or ("alert" in r) == ("record" in r):
                    problems.append("%s: rule %r needs an expr and one of alert or record" % (name(o), what))
                annotations = r.get("annotations") or {}
                if "alert" in r and not (annotations.get("summary") and annotations.get("runbook")):
                    problems.append("%s: alert %s needs summary and runbook annotations" % (name(o), what))
    elif kind == "Ingress":
        backends = [spec["defaultBackend"]] if spec.get("defaultBackend") else []
        for rule in spec.get("rules") or []:
            backends += [p.get("backend") or {} for p in (rule.get("http") or {}).get("paths") or []]
        for b in backends:
            svc = b.get("service") or {}
            targets = [d for d in docs if d["kind"] == "Service" and ns(d) == ns(o)
                       and d["metadata"]["name"] == svc.get("name")]
            if not targets:
                continue  # defined elsewhere (k8s/examples); k8s/tests/production-complete has both
            port = svc.get("port") or {}
            ports = targets[0]["spec"].get("ports") or []
            if not any((p.get("name") == port["name"]) if "name" in port else (p.get("port") == port.get("number"))
                       for p in ports):
                problems.append("%s: backend port %s is not a port of Service %s"
                                % (name(o), port.get("name", port.get("number")), svc.get("name")))

for p in problems:
    print("    " + p)
sys.exit(1 if problems else 0)
PY
}

# check_edge FILE [require]: the edge's own invariants in one rendering (see the header). With
# `require`, a rendering without an edge pod template fails too.
check_edge() {
  "$TOOLS_PYTHON" - "$1" "${2:-}" <<'PY'
import base64, binascii, ipaddress, re, sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
require = sys.argv[2] == "require"
problems, notes = [], []

# What the edge binary does (edge/src/config.rs), which the manifests must agree with.
EDGE_LABELS = {"app.kubernetes.io/name": "ferrocast", "app.kubernetes.io/component": "edge"}
LISTENERS = {"FERROCAST_LISTEN": "0.0.0.0:8080", "FERROCAST_INTERNAL_LISTEN": "0.0.0.0:9090"}
PROBE_PATHS = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
MIN_SECRET_LEN = 32  # the edge refuses a shorter FERROCAST_JWT_SECRET

def bad(message, *args):
    problems.append(message % args)

def ns(o):
    return o.get("metadata", {}).get("namespace", "")

def name(o):
    return "%s/%s" % (o["kind"], o["metadata"]["name"])

def labels_of(o):
    return o.get("metadata", {}).get("labels") or {}

def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

def objects(kind, namespace):
    return [d for d in docs if d["kind"] == kind and ns(d) == namespace]

def env_of(container, namespace):
    """NAME -> ("literal", value, where) | ("secret", secretKeyRef) | ("unknown",)."""
    env = {}
    cms = {c["metadata"]["name"]: c.get("data") or {} for c in objects("ConfigMap", namespace)}
    for ef in container.get("envFrom") or []:
        ref = ef.get("configMapRef")
        if ref and ref.get("name") in cms:
            for k, v in cms[ref["name"]].items():
                env[ef.get("prefix", "") + k] = ("literal", v, "ConfigMap " + ref["name"])
    for e in container.get("env") or []:
        vf = e.get("valueFrom")
        if vf is None:
            env[e["name"]] = ("literal", e.get("value", ""), "env")
        elif "secretKeyRef" in vf:
            env[e["name"]] = ("secret", vf["secretKeyRef"])
        elif "configMapKeyRef" in vf and vf["configMapKeyRef"].get("key") in cms.get(
                vf["configMapKeyRef"].get("name"), {}):
            ref = vf["configMapKeyRef"]
            env[e["name"]] = ("literal", cms[ref["name"]][ref["key"]], "ConfigMap " + ref["name"])
        else:
            env[e["name"]] = ("unknown",)
    return env

def parse_listen(value):
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", value)
    if not m:
        return None, None
    host, port = (m[1], m[2]) if m[1] else (m[3], m[4])
    try:
        return ipaddress.ip_address(host), int(port)
    except ValueError:
        return None, None

def ingress_backends(ing):
    spec = ing.get("spec") or {}
    backends = [spec["defaultBackend"]] if spec.get("defaultBackend") else []
    for rule in spec.get("rules") or []:
        backends += [p.get("backend") or {} for p in (rule.get("http") or {}).get("paths") or []]
    return [b["service"] for b in backends if b.get("service")]

# Edge pod templates: (workload, namespace, labels, annotations, the `edge` container).
edges = []
for o in docs:
    if o["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        continue
    t = (o.get("spec") or {}).get("template") or {}
    labels = (t.get("metadata") or {}).get("labels") or {}
    if not all(labels.get(k) == v for k, v in EDGE_LABELS.items()):
        continue
    edge = [c for c in (t.get("spec") or {}).get("containers") or [] if c.get("name") == "edge"]
    if not edge:
        bad("%s: an edge pod template (labels %s) without a container named `edge`",
            name(o), EDGE_LABELS)
        continue
    annotations = (t.get("metadata") or {}).get("annotations") or {}
    edges.append((o, ns(o), labels, annotations, edge[0]))

if require and not edges:
    bad("no edge pod template (a workload whose pod template has the labels %s)", EDGE_LABELS)

for w, namespace, labels, annotations, c in edges:
    who = name(w)
    env = env_of(c, namespace)
    cports = {p["name"]: p["containerPort"] for p in c.get("ports") or [] if p.get("name")}
    numbers = {p["containerPort"] for p in c.get("ports") or []}

    def resolve(ref):
        """A container port reference (number or name) as a number, or None."""
        return ref if isinstance(ref, int) else cports.get(ref)

    # 1. Both listeners stated, on all addresses, on two different container ports.
    port = {}
    for var, default in LISTENERS.items():
        value = env.get(var)
        if value is None:
            bad("%s: %s is not set: state it (k8s/base/edge.env), so that a change of the edge's "
                "default (%s) cannot move it away from the container ports and probes",
                who, var, default)
            value = ("literal", default, "default")
        elif value[0] != "literal":
            bad("%s: %s must be a literal value (from edge.env), not %s", who, var, value[0])
            value = ("literal", default, "default")
        ip, port[var] = parse_listen(value[1])
        if ip is None:
            bad("%s: %s=%r is not an IP:port address", who, var, value[1])
        elif not ip.is_unspecified:
            bad("%s: %s=%s listens on %s only: the kubelet, the Services and Prometheus reach the "
                "pod's IP, so use 0.0.0.0 (or [::])", who, var, value[1], ip)
        if port[var] is not None and port[var] not in numbers:
            bad("%s: no container port %d for %s=%s", who, port[var], var, value[1])
    public, internal = port["FERROCAST_LISTEN"], port["FERROCAST_INTERNAL_LISTEN"]
    if public is None or internal is None:
        continue
    if public == internal:
        bad("%s: the public and internal listeners share port %d", who, public)
        continue

    def role(number):
        return {public: "public", internal: "internal"}.get(number, "other")

    # 2. Probes: HTTP, on the internal listener, on the right paths. Liveness and readiness are
    #    required (readiness carries the bus, the drain and the connection cap).
    for probe, path in PROBE_PATHS.items():
        p = c.get(probe)
        if p is None:
            if probe != "startupProbe":
                bad("%s: no %s (%s on the internal port)", who, probe, path)
            continue
        get = p.get("httpGet")
        if get is None:
            bad("%s: %s is not an httpGet of %s on the internal port", who, probe, path)
            continue
        target = resolve(get.get("port"))
        if target != internal:
            bad("%s: %s targets port %r (%s), not the internal listener (%d): the public port "
                "serves only the WebSocket path (404 there), and client load on it must never "
                "fail a probe", who, probe, get.get("port"), role(target), internal)
        if get.get("path") != path:
            bad("%s: %s path is %r, expected %s", who, probe, get.get("path"), path)

    # 3. Scrape annotations, for annotation-driven Prometheus set-ups.
    scrape_port = annotations.get("prometheus.io/port")
    if annotations.get("prometheus.io/scrape") == "true" and scrape_port is None:
        bad("%s: prometheus.io/scrape without prometheus.io/port: Prometheus would scrape every "
            "container port, the public one included", who)
    if scrape_port is not None and scrape_port != str(internal):
        bad("%s: prometheus.io/port is %r, not the internal listener's %d",
            who, scrape_port, internal)
    if annotations.get("prometheus.io/path", "/metrics") != "/metrics":
        bad("%s: prometheus.io/path is %r, not /metrics", who, annotations["prometheus.io/path"])

    # 4. Services: none mixes the two listeners; the internal one never leaves the cluster.
    services = {}  # name -> (Service, {port name or number: role})
    for s in objects("Service", namespace):
        spec = s.get("spec") or {}
        if not selects(spec.get("selector"), labels):
            continue
        roles = {}
        for p in spec.get("ports") or []:
            roles[p.get("name")] = roles[p["port"]] = role(resolve(p.get("targetPort", p["port"])))
        services[s["metadata"]["name"]] = (s, roles)
        kinds = set(roles.values())
        if {"public", "internal"} <= kinds:
            bad("%s: exposes both the public port and the internal one: whatever routes to it (an "
                "Ingress, a load balancer) would reach /metrics and the HTTP API too", name(s))
        outside = spec.get("type") in ("LoadBalancer", "NodePort") or spec.get("externalIPs")
        if "internal" in kinds and outside:
            bad("%s: exposes the internal port outside the cluster (type %s%s)", name(s),
                spec.get("type"), ", externalIPs" if spec.get("externalIPs") else "")
    if not any("public" in roles.values() for _, roles in services.values()):
        bad("%s: no Service exposes the public port (%d)", who, public)

    # 5. Ingresses route to the public port only; behind one, the per-address cap must be off.
    routed = []
    for ing in objects("Ingress", namespace):
        for svc in ingress_backends(ing):
            if svc.get("name") not in services:
                continue
            ref = (svc.get("port") or {}).get("name") or (svc.get("port") or {}).get("number")
            r = services[svc["name"]][1].get(ref)
            if r != "public":
                bad("%s: routes to Service %s port %r, which is the edges' %s port, not the public "
                    "(WebSocket) one", name(ing), svc["name"], ref, r or "unknown")
            routed.append(name(ing))
    cap = env.get("FERROCAST_MAX_PENDING_PER_IP")
    if routed and (cap is None or cap[0] != "literal" or cap[1].strip() != "0"):
        bad("%s: %s routes clients here, so every connection comes from an ingress controller's "
            "address: FERROCAST_MAX_PENDING_PER_IP must be 0 (it is %s)", who, routed[0],
            "unset: the edge's default" if cap is None
            else repr(cap[1]) if cap[0] == "literal" else "not a literal")

    # 6. ServiceMonitors scrape /metrics on the internal port of the Services they select.
    for sm in objects("ServiceMonitor", namespace):
        spec = sm.get("spec") or {}
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        chosen = [roles for s, roles in services.values() if selects(sel, labels_of(s))]
        for e in spec.get("endpoints") or []:
            if e.get("targetPort") is not None:
                scraped = {role(resolve(e["targetPort"]))}
            else:
                scraped = {roles[e.get("port")] for roles in chosen if e.get("port") in roles}
            if scraped - {"internal"}:  # (no port at all: check_refs reports that)
                bad("%s: endpoint port %r scrapes the edges' %s port, not the internal listener "
                    "(%d), where /metrics is", name(sm), e.get("port") or e.get("targetPort"),
                    "/".join(sorted(scraped)), internal)
            if e.get("path", "/metrics") != "/metrics":
                bad("%s: endpoint path %r, not /metrics", name(sm), e.get("path"))

    # 7. NetworkPolicy: the pods are isolated for ingress; the internal port is admitted only from
    #    pods of the cluster (pod/namespace selectors, never an ipBlock or "from anywhere"); the
    #    public port is admitted.
    def covers(rule, number):
        if not rule.get("ports"):
            return True
        for p in rule["ports"]:
            if p.get("protocol", "TCP") != "TCP":
                continue
            if "port" not in p:
                return True
            first = resolve(p["port"])
            if first is not None and first <= number <= p.get("endPort", first):
                return True
        return False

    isolated = public_admitted = False
    for np in objects("NetworkPolicy", namespace):
        spec = np.get("spec") or {}
        sel = (spec.get("podSelector") or {}).get("matchLabels") or {}
        if not all(labels.get(k) == v for k, v in sel.items()):
            continue
        if "Ingress" not in (spec.get("policyTypes") or ["Ingress"]):
            continue
        isolated = True
        for rule in spec.get("ingress") or []:
            public_admitted = public_admitted or covers(rule, public)
            if not covers(rule, internal):
                continue
            if not rule.get("from"):
                bad("%s: admits the internal port (%d) from anywhere: allow it only from pods of "
                    "the cluster (e.g. from: [namespaceSelector: {}])", name(np), internal)
            for peer in rule.get("from") or []:
                if "ipBlock" in peer:
                    bad("%s: admits the internal port (%d) from ipBlock %s: only pod and "
                        "namespace selectors keep it inside the cluster",
                        name(np), internal, peer["ipBlock"].get("cidr"))
                    continue
                # Every pod (of a namespace, or of the cluster) could hold its connections:
                # only pods named by label may reach it.
                pods = peer.get("podSelector") or {}
                if not (pods.get("matchLabels") or pods.get("matchExpressions")):
                    bad("%s: admits the internal port (%d) from every pod%s: name the pods that "
                        "need it (Prometheus, API clients) with a podSelector",
                        name(np), internal,
                        " of the namespaces selected" if "namespaceSelector" in peer else
                        " of its namespace")
    if not isolated:
        bad("%s: no NetworkPolicy isolates these pods for ingress: the internal port (%d) is open "
            "to anything that can reach a pod", who, internal)
    elif not public_admitted:
        bad("%s: no NetworkPolicy rule admits the public port (%d): clients could not connect",
            who, public)

    # 8. A JWT key, so the edge is not in development mode (loopback only); an HS256 secret from a
    #    Secret, at least MIN_SECRET_LEN bytes where the Secret is part of the rendering.
    secret, key_file = env.get("FERROCAST_JWT_SECRET"), env.get("FERROCAST_JWT_PUBLIC_KEY_FILE")
    if secret is None and key_file is None:
        bad("%s: neither FERROCAST_JWT_SECRET nor FERROCAST_JWT_PUBLIC_KEY_FILE is set: the edge "
            "would run in development mode (a published secret, loopback only), unreachable by "
            "its probes and Services", who)
    elif secret is not None and key_file is not None:
        bad("%s: both FERROCAST_JWT_SECRET and FERROCAST_JWT_PUBLIC_KEY_FILE are set: the edge "
            "refuses to start (they conflict); drop the secret when using a public key", who)
    if secret is not None and secret[0] == "literal":
        bad("%s: FERROCAST_JWT_SECRET is a literal value (%s): take it from a Secret",
            who, secret[2])
        if len(secret[1].encode()) < MIN_SECRET_LEN:
            bad("%s: FERROCAST_JWT_SECRET is %d bytes; the edge refuses fewer than %d",
                who, len(secret[1].encode()), MIN_SECRET_LEN)
    elif secret is not None and secret[0] == "secret":
        ref = secret[1]
        if ref.get("optional"):
            bad("%s: FERROCAST_JWT_SECRET's secretKeyRef is optional: without the Secret the edge "
                "would run in development mode, on loopback only", who)
        found = [s for s in objects("Secret", namespace)
                 if s["metadata"]["name"] == ref.get("name")]
        for s in found:
            key = ref.get("key")
            if key in (s.get("stringData") or {}):
                value = str(s["stringData"][key]).encode()
            elif key in (s.get("data") or {}):
                # kustomize wraps long values over lines; the API server ignores the newlines.
                try:
                    value = base64.b64decode("".join(str(s["data"][key]).split()), validate=True)
                except (binascii.Error, ValueError):
                    bad("%s: data.%s is not base64", name(s), key)
                    continue
            else:
                bad("%s: no key %r, which %s's FERROCAST_JWT_SECRET reads", name(s), key, who)
                continue
            if len(value) < MIN_SECRET_LEN:
                bad("%s: %s is %d bytes; the edge refuses a JWT secret shorter than %d bytes and "
                    "would not start", name(s), key, len(value), MIN_SECRET_LEN)
        if not found:
            notes.append("%s: Secret %s comes from outside the manifests (the edge checks its "
                         "length at start)" % (who, ref.get("name")))
    notes.append("%s: public port %d, internal port %d (%d Service(s), %d Ingress route(s))"
                 % (who, public, internal, len(services), len(routed)))

for p in problems:
    print("    " + p)
if not problems:
    for n in notes:
        print("    note: " + n)
sys.exit(1 if problems else 0)
PY
}

# check_policies NAME FILE [EXTRA_SKIPS]: checkov's Kubernetes checks.
check_policies() {
  local name=$1 file=$2 skips
  skips=$(IFS=,; echo "${CHECKOV_SKIPS[*]}${3:+,$3}")
  run_checkov --framework kubernetes --skip-check "$skips" -f "$file"
}

run_checkov() {
  local out rc=0
  out=$(CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE \
    "$CHECKOV" --skip-download --quiet --compact "$@" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    sed 's/^/    /' <<<"$out"
  else
    sed -n 's/^\(Passed checks: .*\)/    \1/p' <<<"$out"
  fi
  return "$rc"
}

# ---------------------------------------------------------------------------------------------

failures=()
# step LABEL COMMAND...: runs a check, records it if it fails.
step() {
  local label=$1
  shift
  echo "-- $label"
  if ! "$@"; then
    echo "   FAILED: $label"
    failures+=("$label")
    return 1
  fi
}

# The kustomizations to render: every overlay, the examples, and the test kustomizations.
# (k8s/base and k8s/components are rendered through them; k8s/tests/broken/*/ are the self-test's
# deliberately broken ones, one level deeper, so this glob skips them.)
targets=()
for dir in k8s/overlays/*/ k8s/examples/ k8s/tests/*/; do
  [ -f "$dir/kustomization.yaml" ] && targets+=("${dir%/}")
done

# validate_rendered NAME FILE [with-refs [require-edge]]: schema, cross-references, the edge's
# invariants and policies of one rendering. require-edge: the rendering must contain the edge.
validate_rendered() {
  local name=$1 file=$2
  step "$name: schema (Kubernetes ${K8S_VERSIONS[*]}, strict)" check_schema "$file" || true
  if [ "${3:-}" = with-refs ]; then
    step "$name: cross-references" check_refs "$file" || true
    step "$name: edge invariants" check_edge "$file" "${4:+require}" || true
  fi
  step "$name: checkov" check_policies "$name" "$file" "${CHECKOV_EXTRA_SKIPS[$name]:-}" || true
}

# collect_extra PATH NAME: turns an extra PATH into one YAML file $OUT/NAME.yaml.
collect_extra() {
  local path=$1 name=$2 f
  if [ -d "$path" ] && [ -f "$path/kustomization.yaml" ]; then
    render "$name" "$path"
  elif [ -d "$path" ]; then
    : >"$OUT/$name.yaml"
    while IFS= read -r f; do
      printf -- '---\n' >>"$OUT/$name.yaml"
      cat "$f" >>"$OUT/$name.yaml"
      printf '\n' >>"$OUT/$name.yaml"
    done < <(find "$path" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
  elif [ -f "$path" ]; then
    cp "$path" "$OUT/$name.yaml"
  else
    echo "    no such file or folder: $path"
    return 1
  fi
}

run_validation() {
  local dir name i=0
  for dir in "${targets[@]}"; do
    name=$(basename "$dir")
    echo "== $dir"
    if step "$name: kubectl kustomize $dir" render "$name" "$dir"; then
      # The overlays and the test kustomizations deploy edges; the examples do not.
      case $dir in
        k8s/examples) validate_rendered "$name" "$OUT/$name.yaml" with-refs ;;
        *) validate_rendered "$name" "$OUT/$name.yaml" with-refs require-edge ;;
      esac
    fi
  done
  for path in "${extra[@]}"; do
    i=$((i + 1))
    name="extra-$i"
    echo "== $path (as $name)"
    if step "$name: collect $path" collect_extra "$path" "$name"; then
      # A kustomization renders a whole application: cross-reference it too. Loose manifests may
      # refer to objects defined elsewhere, so they get the schema and policy checks only.
      if [ -f "$path/kustomization.yaml" ]; then
        validate_rendered "$name" "$OUT/$name.yaml" with-refs
      else
        validate_rendered "$name" "$OUT/$name.yaml"
      fi
    fi
  done
  echo "== Dockerfile"
  step "Dockerfile: checkov" run_checkov --framework dockerfile -f Dockerfile || true
  echo "== k8s/components/prometheusrule"
  step "PrometheusRule: generated from monitoring/prometheus/ferrocast-alerts.yaml" \
    scripts/generate-prometheusrule.sh --check || true
}

# The self-test: good renderings must pass, and each broken manifest must be rejected by the
# same schema, cross-reference or edge check CI runs (the edge's fixtures for the reason named in
# their `# expect:` line); checkov must reject the broken file as a whole too.
run_self_test() {
  local fixture=k8s/tests/broken-deployment.yaml doc n=0 rejected=0 dir name expect out edge_n=0
  echo "== self-test: the production overlay must pass"
  if step "self-test: render production" render production k8s/overlays/production; then
    step "self-test: production passes the schema check" check_schema "$OUT/production.yaml" || true
    step "self-test: production passes the cross-reference check" check_refs "$OUT/production.yaml" || true
    step "self-test: production passes the edge check" check_edge "$OUT/production.yaml" require || true
  fi
  # Dev has the one Secret in the manifests (its JWT secret's length is checked), production-complete
  # the ServiceMonitor and an Ingress: the edge check must accept them as they are.
  for dir in k8s/overlays/dev k8s/tests/production-complete; do
    name=$(basename "$dir")
    echo "== self-test: $dir must pass the edge check"
    if step "self-test: render $name" render "$name" "$dir"; then
      step "self-test: $name passes the cross-reference check" check_refs "$OUT/$name.yaml" || true
      step "self-test: $name passes the edge check" check_edge "$OUT/$name.yaml" require || true
    fi
  done

  mkdir -p "$OUT/self-test"
  "$TOOLS_PYTHON" - "$fixture" "$OUT/self-test" <<'PY'
import sys, yaml
for i, doc in enumerate(d for d in yaml.safe_load_all(open(sys.argv[1])) if d):
    with open("%s/doc-%d.yaml" % (sys.argv[2], i + 1), "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
PY
  for doc in "$OUT"/self-test/doc-*.yaml; do
    n=$((n + 1))
    echo "== self-test: $(sed -n 's/^  name: //p' "$doc" | head -1) ($fixture, document $n) must be rejected"
    if ! check_schema "$doc"; then
      echo "   rejected by the schema check, as it should be"
      rejected=$((rejected + 1))
    elif ! check_refs "$doc"; then
      echo "   rejected by the cross-reference check, as it should be"
      rejected=$((rejected + 1))
    else
      echo "   FAILED: the schema and cross-reference checks accepted it"
      failures+=("self-test: $fixture document $n was accepted")
    fi
  done
  if [ "$n" -lt 4 ]; then
    failures+=("self-test: expected at least 4 documents in $fixture, found $n")
  fi

  # Each k8s/tests/broken/NAME/ is a kustomization with one realistic mistake the schema accepts;
  # the edge check must reject it, with the finding its `# expect:` line names (so it is rejected
  # for that mistake, not for something else).
  for dir in k8s/tests/broken/*/; do
    dir=${dir%/}
    name=broken-$(basename "$dir")
    edge_n=$((edge_n + 1))
    n=$((n + 1))
    expect=$(sed -n 's/^# expect: //p' "$dir/kustomization.yaml" | head -1)
    echo "== self-test: $dir must be rejected by the edge check"
    if [ -z "$expect" ]; then
      echo "   FAILED: no '# expect:' line in $dir/kustomization.yaml"
      failures+=("self-test: $dir has no '# expect:' line")
      continue
    fi
    if ! render "$name" "$dir"; then
      echo "   FAILED: it does not render (it must render, so that only the edge check can catch it)"
      failures+=("self-test: $dir does not render")
      continue
    fi
    if out=$(check_edge "$OUT/$name.yaml" require); then
      echo "   FAILED: the edge check accepted it"
      failures+=("self-test: $dir was accepted")
    elif grep -qF -- "$expect" <<<"$out"; then
      echo "   rejected, as it should be:"
      grep -F -- "$expect" <<<"$out"
      rejected=$((rejected + 1))
    else
      echo "   FAILED: rejected, but without the expected finding ($expect):"
      echo "$out"
      failures+=("self-test: $dir rejected for another reason")
    fi
  done
  if [ "$edge_n" -lt 10 ]; then
    failures+=("self-test: expected at least 10 fixtures in k8s/tests/broken/, found $edge_n")
  fi

  echo "== self-test: checkov must reject $fixture"
  if check_policies broken "$fixture" >/dev/null; then
    echo "   FAILED: checkov accepted it"
    failures+=("self-test: checkov accepted $fixture")
  else
    echo "   rejected, as it should be"
  fi
  echo "== self-test: $rejected of $n broken manifests rejected"
}

if ! setup_tools; then
  echo "validate-k8s: could not install the validation tools" >&2
  exit 2
fi
rm -rf "$OUT"
mkdir -p "$OUT"

if $self_test; then
  run_self_test
else
  run_validation
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "validate-k8s: ${#failures[@]} check(s) FAILED:"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
if $self_test; then
  echo "validate-k8s: self-test passed (invalid manifests are rejected)"
else
  echo "validate-k8s: all checks passed (${#targets[@]} kustomizations, ${#extra[@]} extra, Dockerfile)"
fi
