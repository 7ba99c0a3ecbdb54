#!/usr/bin/env bash
# Validates Ferrocast's Kubernetes manifests and Dockerfile offline, as CI does:
#   1. renders every kustomization (k8s/overlays/*, k8s/examples, k8s/tests/*/) with kubectl kustomize;
#   2. checks each rendering against the Kubernetes OpenAPI schemas with kubernetes-validate
#      --strict (unknown fields are errors), for every version in K8S_VERSIONS; a kind with no
#      schema is an error too, except the CRD kinds listed in CRD_KINDS, which get the
#      cross-reference checks of step 3 instead;
#   3. cross-references each rendering: Service, PodDisruptionBudget and NetworkPolicy selectors
#      must select a pod template, named ports and ConfigMaps must exist, the HPA's target must
#      exist, a ServiceMonitor must select a Service and name one of its ports;
#   4. runs checkov's Kubernetes policies on each rendering, and its Dockerfile policies on the
#      Dockerfile, skipping only the checks listed (with reasons) below.
# Prints what failed and exits 1 if anything did (2 if the tools could not be set up).
#
# Usage:
#   scripts/validate-k8s.sh [PATH...]   validate k8s/, the Dockerfile, and PATHs (extra manifests:
#                                       a YAML file, a folder of them, or a kustomization folder;
#                                       loose files get steps 2 and 4, a kustomization all four)
#   scripts/validate-k8s.sh --self-test show that validation accepts a good rendering and rejects
#                                       each manifest in k8s/tests/broken-deployment.yaml
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

for p in problems:
    print("    " + p)
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
# (k8s/base and k8s/components are rendered through them.)
targets=()
for dir in k8s/overlays/*/ k8s/examples/ k8s/tests/*/; do
  [ -f "$dir/kustomization.yaml" ] && targets+=("${dir%/}")
done

# validate_rendered NAME FILE [with-refs]: schema, cross-references and policies of one rendering.
validate_rendered() {
  local name=$1 file=$2
  step "$name: schema (Kubernetes ${K8S_VERSIONS[*]}, strict)" check_schema "$file" || true
  if [ "${3:-}" = with-refs ]; then
    step "$name: cross-references" check_refs "$file" || true
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
      validate_rendered "$name" "$OUT/$name.yaml" with-refs
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
}

# The self-test: a good rendering must pass, and each broken manifest must be rejected by the
# same schema or cross-reference check CI runs; checkov must reject the broken file as a whole too.
run_self_test() {
  local fixture=k8s/tests/broken-deployment.yaml doc n=0 rejected=0
  echo "== self-test: the production overlay must pass"
  if step "self-test: render production" render production k8s/overlays/production; then
    step "self-test: production passes the schema check" check_schema "$OUT/production.yaml" || true
    step "self-test: production passes the cross-reference check" check_refs "$OUT/production.yaml" || true
  fi

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
