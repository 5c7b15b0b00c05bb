# wsgate build and test entry points. `make run` and `make test` are all the
# set-up a fresh Debian machine needs: test-deps installs what tests use.

GO          ?= go
BIN         ?= bin/wsgate
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The Debian version of an untagged build orders by the commit count; file
# times in the packages are the last commit's, so a commit makes the same
# packages wherever it is built.
COMMITS     ?= $(shell git rev-list --count HEAD 2>/dev/null || echo 0)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
LDFLAGS     := -s -w -X main.version=$(VERSION)
CONFIG      ?=
FUZZTIME    ?= 10s
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Debian packages the integration tests run: a real broker and its clients,
# a non-Go WebSocket client, socat for serial-port pairs, openssl for
# certificates made independently of our code, systemd for
# systemd-analyze, which checks the packaged unit, nats-server, nginx and
# haproxy for a fleet (docs/DEPLOY.md), and chromium for the
# status page's browser test.
TEST_DEBS   := mosquitto mosquitto-clients python3-websockets socat openssl systemd chromium nats-server nginx haproxy
# A current nats-server, built from the Go module proxy (Debian 12 has 2.9):
# the fleet tests run on both (cmd/wsgate/fleet_test.go, docs/DEPLOY.md).
NATS_SERVER_VERSION := v2.15.3
NATS_SERVER := $(CURDIR)/.cache/nats-server-$(NATS_SERVER_VERSION)/nats-server
CROSS       := linux/amd64 linux/arm64 linux/arm/6 linux/arm/7
# Debian architecture = binary of `make cross`. armhf takes the ARMv6 build:
# Raspberry Pi OS's armhf runs on ARMv6 (Pi 1, Zero) as well as ARMv7.
DEBS        := amd64=dist/wsgate-linux-amd64 arm64=dist/wsgate-linux-arm64 armhf=dist/wsgate-linux-armv6

PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.1
PROTOC_GEN_VTPROTO := github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@v0.6.0
# The batches both sides decode reuse their events, actions, frames and messages.
VTPROTO_POOL       := $(foreach m,Events Event Actions Action Frame Message,--go-vtproto_opt=pool=github.com/wsgate/wsgate/plugins/proto.$(m))

.PHONY: all build run test test-deps unit cover fuzz cross deb lint clean proto bench

all: lint build

build:
	@[ -x $(BIN) ] || echo "building $(BIN): the first build downloads and compiles the dependencies, a minute or two"
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/wsgate

# The gateway on its embedded defaults (WebSocket :8080, MQTT broker :1883),
# or on CONFIG=path/to/wsgate.toml.
run: build
	./$(BIN) run $(if $(CONFIG),-config $(CONFIG))

# The whole suite, race detector on, after the static checks; then the
# binary's tests again as a build without SHIP (protocols/all's tags).
test: test-deps lint
	WSGATE_NATS_SERVER=$(NATS_SERVER) $(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -count=1 -tags noship ./cmd/wsgate/

# Unit and integration tests only, without installing anything.
unit:
	$(GO) test -race -count=1 ./...

test-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v mosquitto_sub >/dev/null 2>&1 || missing="$$missing mosquitto-clients"; \
	command -v socat >/dev/null 2>&1 || missing="$$missing socat"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing="$$missing nats-server"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	/usr/bin/python3 -c 'import websockets' >/dev/null 2>&1 || missing="$$missing python3-websockets"; \
	if [ -n "$$missing" ]; then \
		echo "installing test dependencies:$$missing"; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $(TEST_DEBS); \
	fi
	@[ -x $(NATS_SERVER) ] || { echo "building nats-server $(NATS_SERVER_VERSION) for the fleet tests"; \
		GOBIN=$(dir $(NATS_SERVER)) $(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION); }

cover:
	$(GO) test -count=1 -coverprofile=coverage.out ./...
	$(GO) tool cover -func=coverage.out | tail -1

# A short bounded run of every fuzz target (FUZZTIME each).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test -run='^$$' -fuzz="^$$target$$" -fuzztime=$(FUZZTIME) $$pkg; \
		done; \
	done

# Static binaries for the usual gateway hardware, into dist/, with their
# checksums in dist/SHA256SUMS (check with: cd dist && sha256sum -c SHA256SUMS).
cross:
	@set -e; mkdir -p dist; built=""; for target in $(CROSS); do \
		os=$${target%%/*}; rest=$${target#*/}; arch=$${rest%%/*}; arm=""; suffix=$$arch; \
		case $$rest in arm/*) arm=$${rest#arm/}; suffix=armv$$arm;; esac; \
		echo "build dist/wsgate-$$os-$$suffix"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags "$(LDFLAGS)" \
			-o dist/wsgate-$$os-$$suffix ./cmd/wsgate; \
		built="$$built wsgate-$$os-$$suffix"; \
	done; cd dist && sha256sum $$built > SHA256SUMS && ls -l

# Debian packages (amd64, arm64, armhf) of the cross binaries, into dist/,
# their checksums added to dist/SHA256SUMS. deploy/nfpm.yaml says what they
# hold; deploy/mkdeb packs them (nfpm, in process: no network).
deb: cross
	@set -e; debs=$$(SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./deploy/mkdeb \
		-version "$(VERSION)" -commits "$(COMMITS)" -out dist $(DEBS)); \
	cd dist && sha256sum $$debs >> SHA256SUMS && ls -l $$debs

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags noship ./...
	@# ./... leaves out testdata, where the plugins the tests and make bench build are.
	$(GO) vet $$(find plugins/testdata -name '*.go' | xargs -n1 dirname | sort -u | sed 's|^|./|')
	$(GO) run $(STATICCHECK) ./...

# Go benchmarks and end-to-end load runs against a Mosquitto it starts;
# writes docs/BENCHMARKS.md.
bench: test-deps
	.ci/bench

# Regenerate the plugin contract's Go code from plugins/proto/plugin.proto.
proto:
	@command -v protoc >/dev/null 2>&1 || { sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq protobuf-compiler; }
	GOBIN=$(CURDIR)/bin/tools $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/bin/tools $(GO) install $(PROTOC_GEN_GO_GRPC)
	GOBIN=$(CURDIR)/bin/tools $(GO) install $(PROTOC_GEN_VTPROTO)
	cd plugins/proto && PATH="$(CURDIR)/bin/tools:$$PATH" protoc \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		--go-vtproto_out=. --go-vtproto_opt=paths=source_relative \
		--go-vtproto_opt=features=marshal+unmarshal+size+pool $(VTPROTO_POOL) plugin.proto

clean:
	rm -rf bin dist coverage.out
