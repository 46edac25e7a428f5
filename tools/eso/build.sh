#!/usr/bin/env bash
# Build External Secrets Operator (ESO), the peer the benchmark measures beside the operator,
# with the machine's Go and nothing but the Go module proxy, into the tools cache, and put its
# CRDs beside it. What is built is a small main package (below) in a temporary module that
# requires github.com/external-secrets/external-secrets at $VERSION and wires the controller-
# runtime manager as upstream's cmd/controller/root.go does, with the SecretStore,
# ClusterSecretStore and ExternalSecret reconcilers only (no PushSecret, ClusterExternalSecret,
# ClusterPushSecret or GeneratorState controller, no webhook, no cert controller).
#
# Providers: upstream's controller packages import pkg/provider/register and
# pkg/generator/register, which link every provider and generator (every cloud SDK). Go does
# not let a build overlay touch the module cache, so the build copies upstream's module (as
# `go mod download` verified it against the checksum database; without docs/ and e2e/) into
# its temporary folder, rewrites those two files so that only the `fake` provider and the
# `fake` generator are registered, and points a `replace` at the copy: the build then fetches
# only the modules those need, at the versions of ESO's go.mod. Everything else is upstream's
# source unchanged. A binary with every provider linked (as users run it) starts with a larger
# RSS than this one.
#
# Usage: tools/eso/build.sh          build if needed; the last stdout line is the bin dir
#        tools/eso/build.sh --check  print the bin dir, exit 0 if built, else exit 1
# The binary is BIN_DIR/external-secrets; the CRDs (ExternalSecret, SecretStore,
# ClusterSecretStore) are in BIN_DIR/../crds. `BIN_DIR/external-secrets --help` lists its flags
# (--kubeconfig or $KUBECONFIG, --metrics-addr, default 0 = off, --concurrent, ...).
#
# Environment:
#   EGP_TOOLS_CACHE  cache root (default: $EGP_KUBE_CACHE when that is set, else
#                    ${XDG_CACHE_HOME:-$HOME/.cache}/egp-operator); eso/VERSION-DIGEST below it
#
# The binary is built under a temporary name and renamed into place, last, so an interrupted
# build is never mistaken for a finished one.
set -euo pipefail

VERSION=v0.16.2
MODULE=github.com/external-secrets/external-secrets
tool=eso
binary=external-secrets
mode="${1:-}"
self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

root="${EGP_TOOLS_CACHE:-${EGP_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/egp-operator}}"
# This file holds the main package and the overlay: any change to it builds anew.
digest="$(sha256sum "$self" | cut -c1-12)"
out="$root/$tool/$VERSION-$digest"
bin="$out/bin"
crds="$out/crds"
crd_files=(
  external-secrets.io_externalsecrets.yaml
  external-secrets.io_secretstores.yaml
  external-secrets.io_clustersecretstores.yaml
)

complete() { [[ -x "$bin/$binary" && -d "$crds" ]]; }

if [[ "$mode" == "--check" ]]; then
  complete && { echo "$bin"; exit 0; }
  echo "build.sh: ESO $VERSION is not built yet in $bin" >&2
  exit 1
fi
if complete; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
# Parallel callers serialise here, and the later ones find the finished binary.
exec 9>"$out/.lock"
flock 9
if complete; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: 'go' is not on PATH" >&2; exit 2; }
tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "build.sh: building ESO $VERSION (fake provider only) into $bin" >&2
started=$SECONDS

# Never fetch another toolchain: the machine's Go builds it, or the build fails.
export GOTOOLCHAIN=local CGO_ENABLED=0

cd "$tmp"
# The replace is upstream's own (its go.mod at $VERSION): a dependency's replace directives
# do not apply to the modules that require it, so it is repeated here.
cat >go.mod <<EOF
module egp-operator/tools/eso

go 1.24.2

require $MODULE $VERSION

replace github.com/Masterminds/sprig/v3 => github.com/external-secrets/sprig/v3 v3.3.0
EOF

cat >main.go <<'EOF'
// ESO's controller with the SecretStore, ClusterSecretStore and ExternalSecret reconcilers,
// wired as upstream's cmd/controller/root.go wires them (same scheme, manager options, client
// cache settings, rate limiter and defaults), with the fake provider only. See build.sh.
package main

import (
	"errors"
	"flag"
	"os"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	v1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/server"

	esv1 "github.com/external-secrets/external-secrets/apis/externalsecrets/v1"
	esv1alpha1 "github.com/external-secrets/external-secrets/apis/externalsecrets/v1alpha1"
	genv1alpha1 "github.com/external-secrets/external-secrets/apis/generators/v1alpha1"
	ctrlcommon "github.com/external-secrets/external-secrets/pkg/controllers/common"
	"github.com/external-secrets/external-secrets/pkg/controllers/externalsecret"
	"github.com/external-secrets/external-secrets/pkg/controllers/externalsecret/esmetrics"
	ctrlmetrics "github.com/external-secrets/external-secrets/pkg/controllers/metrics"
	"github.com/external-secrets/external-secrets/pkg/controllers/secretstore"
	"github.com/external-secrets/external-secrets/pkg/controllers/secretstore/cssmetrics"
	"github.com/external-secrets/external-secrets/pkg/controllers/secretstore/ssmetrics"
	"github.com/external-secrets/external-secrets/pkg/feature"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

var (
	scheme   = runtime.NewScheme()
	setupLog = ctrl.Log.WithName("setup")
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	utilruntime.Must(esv1.AddToScheme(scheme))
	utilruntime.Must(esv1alpha1.AddToScheme(scheme))
	utilruntime.Must(genv1alpha1.AddToScheme(scheme))
}

func main() {
	fs := pflag.NewFlagSet("external-secrets", pflag.ContinueOnError)
	// Upstream's defaults, except --metrics-addr (upstream ":8080"): off unless asked for.
	metricsAddr := fs.String("metrics-addr", "0", "The address the metric endpoint binds to (0: none), e.g. 127.0.0.1:8080.")
	controllerClass := fs.String("controller-class", "default", "The controller is instantiated with a specific controller name and filters ES based on this property")
	enableLeaderElection := fs.Bool("enable-leader-election", false, "Enable leader election for controller manager.")
	concurrent := fs.Int("concurrent", 1, "The number of concurrent reconciles.")
	clientQPS := fs.Float32("client-qps", 50, "QPS configuration to be passed to rest.Client")
	clientBurst := fs.Int("client-burst", 100, "Maximum Burst allowed to be passed to rest.Client")
	loglevel := fs.String("loglevel", "info", "loglevel to use, one of: debug, info, warn, error, dpanic, panic, fatal")
	zapTimeEncoding := fs.String("zap-time-encoding", "epoch", "Zap time encoding (one of 'epoch', 'millis', 'nano', 'iso8601', 'rfc3339' or 'rfc3339nano')")
	namespace := fs.String("namespace", "", "watch external secrets scoped in the provided namespace only")
	enableClusterStoreReconciler := fs.Bool("enable-cluster-store-reconciler", true, "Enable cluster store reconciler.")
	enableSecretsCache := fs.Bool("enable-secrets-caching", false, "Enable secrets caching for ALL secrets in the cluster.")
	enableConfigMapsCache := fs.Bool("enable-configmaps-caching", false, "Enable configmaps caching for ALL configmaps in the cluster.")
	enableManagedSecretsCache := fs.Bool("enable-managed-secrets-caching", true, "Enable secrets caching for secrets managed by an ExternalSecret")
	storeRequeueInterval := fs.Duration("store-requeue-interval", 5*time.Minute, "Default Time duration between reconciling (Cluster)SecretStores")
	enableFloodGate := fs.Bool("enable-flood-gate", true, "Enable flood gate.")
	enableExtendedMetricLabels := fs.Bool("enable-extended-metric-labels", false, "Enable recommended kubernetes annotations as labels in metrics.")
	for _, f := range feature.Features() {
		fs.AddFlagSet(f.Flags)
	}
	fs.AddGoFlagSet(flag.CommandLine) // --kubeconfig, from controller-runtime
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}

	var lvl zapcore.Level
	var enc zapcore.TimeEncoder
	if err := lvl.UnmarshalText([]byte(*loglevel)); err != nil {
		setupLog.Error(err, "error unmarshalling loglevel")
		os.Exit(1)
	}
	if err := enc.UnmarshalText([]byte(*zapTimeEncoding)); err != nil {
		setupLog.Error(err, "error unmarshalling timeEncoding")
		os.Exit(1)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zap.Options{Level: lvl, TimeEncoder: enc})))

	ctrlmetrics.SetUpLabelNames(*enableExtendedMetricLabels)
	esmetrics.SetUpMetrics()
	config := ctrl.GetConfigOrDie()
	config.QPS = *clientQPS
	config.Burst = *clientBurst

	clientCacheDisableFor := make([]client.Object, 0)
	if !*enableSecretsCache {
		clientCacheDisableFor = append(clientCacheDisableFor, &v1.Secret{})
	}
	if !*enableConfigMapsCache {
		clientCacheDisableFor = append(clientCacheDisableFor, &v1.ConfigMap{})
	}
	mgrOpts := ctrl.Options{
		Scheme:  scheme,
		Metrics: server.Options{BindAddress: *metricsAddr},
		Client: client.Options{
			Cache: &client.CacheOptions{DisableFor: clientCacheDisableFor},
		},
		LeaderElection:   *enableLeaderElection,
		LeaderElectionID: "external-secrets-controller",
	}
	if *namespace != "" {
		mgrOpts.Cache.DefaultNamespaces = map[string]cache.Config{*namespace: {}}
	}
	mgr, err := ctrl.NewManager(config, mgrOpts)
	if err != nil {
		setupLog.Error(err, "unable to start manager")
		os.Exit(1)
	}

	secretClient := mgr.GetClient()
	if *enableManagedSecretsCache && !*enableSecretsCache {
		secretClient, err = ctrlcommon.BuildManagedSecretClient(mgr, *namespace)
		if err != nil {
			setupLog.Error(err, "unable to create managed secret client")
			os.Exit(1)
		}
	}
	options := func() controller.Options {
		return controller.Options{
			MaxConcurrentReconciles: *concurrent,
			RateLimiter:             ctrlcommon.BuildRateLimiter(),
		}
	}

	ssmetrics.SetUpMetrics()
	if err = (&secretstore.StoreReconciler{
		Client:          mgr.GetClient(),
		Log:             ctrl.Log.WithName("controllers").WithName("SecretStore"),
		Scheme:          mgr.GetScheme(),
		ControllerClass: *controllerClass,
		RequeueInterval: *storeRequeueInterval,
	}).SetupWithManager(mgr, options()); err != nil {
		setupLog.Error(err, "unable to create controller", "controller", "SecretStore")
		os.Exit(1)
	}
	if *enableClusterStoreReconciler {
		cssmetrics.SetUpMetrics()
		if err = (&secretstore.ClusterStoreReconciler{
			Client:          mgr.GetClient(),
			Log:             ctrl.Log.WithName("controllers").WithName("ClusterSecretStore"),
			Scheme:          mgr.GetScheme(),
			ControllerClass: *controllerClass,
			RequeueInterval: *storeRequeueInterval,
		}).SetupWithManager(mgr, options()); err != nil {
			setupLog.Error(err, "unable to create controller", "controller", "ClusterSecretStore")
			os.Exit(1)
		}
	}
	if err = (&externalsecret.Reconciler{
		Client:                    mgr.GetClient(),
		SecretClient:              secretClient,
		Log:                       ctrl.Log.WithName("controllers").WithName("ExternalSecret"),
		Scheme:                    mgr.GetScheme(),
		RestConfig:                mgr.GetConfig(),
		ControllerClass:           *controllerClass,
		RequeueInterval:           time.Hour,
		ClusterSecretStoreEnabled: *enableClusterStoreReconciler,
		EnableFloodGate:           *enableFloodGate,
	}).SetupWithManager(mgr, options()); err != nil {
		setupLog.Error(err, "unable to create controller", "controller", "ExternalSecret")
		os.Exit(1)
	}

	for _, f := range feature.Features() {
		if f.Initialize != nil {
			f.Initialize()
		}
	}
	setupLog.Info("starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "problem running manager")
		os.Exit(1)
	}
}
EOF

# Upstream's module, from the proxy, checked against go.sum and the checksum database.
dir="$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -d "$dir" ]] || { echo "build.sh: go mod download gave no folder for $MODULE@$VERSION" >&2; exit 2; }

# The copy, with the two registries holding the fake provider and the fake generator only.
for f in pkg/provider/register/register.go pkg/generator/register/register.go; do
  [[ -f "$dir/$f" ]] || { echo "build.sh: $f is not in $dir" >&2; exit 2; }
done
mkdir eso
for entry in "$dir"/*; do
  case "$(basename "$entry")" in docs|e2e) continue ;; esac
  cp -R "$entry" eso/
done
chmod -R u+w eso
cat >eso/pkg/provider/register/register.go <<'EOF'
// Rewritten by tools/eso/build.sh: the fake provider only.
package register

import (
	_ "github.com/external-secrets/external-secrets/pkg/provider/fake"
)
EOF
cat >eso/pkg/generator/register/register.go <<'EOF'
// Rewritten by tools/eso/build.sh: the fake generator only.
package register

import (
	_ "github.com/external-secrets/external-secrets/pkg/generator/fake"
)
EOF
echo "replace $MODULE => ./eso" >>go.mod

# -mod=mod fills go.sum with what the build imports, at the versions of ESO's go.mod.
GOFLAGS="${GOFLAGS:-} -mod=mod" \
  go build -trimpath -ldflags "-s -w" -o "$tmp/$binary" . >&2

mkdir -p "$tmp/crds"
for f in "${crd_files[@]}"; do
  cp "eso/config/crds/bases/$f" "$tmp/crds/$f"
done
rm -rf "$crds"
mv "$tmp/crds" "$crds"
mv -f "$tmp/$binary" "$bin/$binary"
echo "build.sh: built in $((SECONDS - started)) s; CRDs in $crds" >&2
echo "$bin"
