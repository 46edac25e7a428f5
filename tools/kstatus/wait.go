package main

// The wait mode: the cli-utils applier's wait (its WaitTask) on objects already in a cluster.
// The applier starts a DefaultStatusWatcher on what it applied and waits until every object is
// Current, reporting ReconcileFailed for an object that turns Failed; a timeout is
// ReconcileTimeout. This mode runs that same watcher, so the test sees what `kpt live apply`
// and other cli-utils users see, without an inventory or an apply of its own.
//
//	kstatus wait --kubeconfig PATH [--timeout 60s] GROUP/KIND/NAMESPACE/NAME...
//
// Prints one JSON line per status the watcher reports ({"name", "kind", "status", "message"}),
// then exits 0 once all are Current, 1 once any is Failed, 3 on timeout, 2 on a usage or
// connection error.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cli-utils/pkg/kstatus/polling/event"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/cli-utils/pkg/kstatus/watcher"
	"sigs.k8s.io/cli-utils/pkg/object"
)

type waitLine struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func wait(args []string) int {
	flags := flag.NewFlagSet("kstatus wait", flag.ContinueOnError)
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig of the cluster")
	timeout := flags.Duration("timeout", time.Minute, "give up after this long")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	ids, err := parseIDs(flags.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus wait:", err)
		return 2
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus wait:", err)
		return 2
	}
	client, err := dynamic.NewForConfig(config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus wait:", err)
		return 2
	}
	discoveryClient, err := discovery.NewDiscoveryClientForConfig(config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus wait:", err)
		return 2
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discoveryClient))

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	latest := map[object.ObjMetadata]status.Status{}
	encoder := json.NewEncoder(os.Stdout)
	for e := range watcher.NewDefaultStatusWatcher(client, mapper).Watch(ctx, ids, watcher.Options{}) {
		switch e.Type {
		case event.ErrorEvent:
			if errors.Is(e.Error, context.DeadlineExceeded) || ctx.Err() != nil {
				return 3
			}
			fmt.Fprintln(os.Stderr, "kstatus wait:", e.Error)
			return 2
		case event.ResourceUpdateEvent:
			r := e.Resource
			latest[r.Identifier] = r.Status
			_ = encoder.Encode(waitLine{r.Identifier.Name, r.Identifier.GroupKind.Kind, r.Status.String(), r.Message})
			if r.Status == status.FailedStatus {
				return 1
			}
			if allCurrent(ids, latest) {
				return 0
			}
		}
	}
	return 3 // the channel closes when the context ends
}

func allCurrent(ids object.ObjMetadataSet, latest map[object.ObjMetadata]status.Status) bool {
	for _, id := range ids {
		if latest[id] != status.CurrentStatus {
			return false
		}
	}
	return true
}

// parseIDs reads GROUP/KIND/NAMESPACE/NAME, as the applier identifies what it applied.
func parseIDs(args []string) (object.ObjMetadataSet, error) {
	if len(args) == 0 {
		return nil, errors.New("no objects: give GROUP/KIND/NAMESPACE/NAME")
	}
	ids := make(object.ObjMetadataSet, 0, len(args))
	for _, arg := range args {
		parts := strings.Split(arg, "/")
		if len(parts) != 4 {
			return nil, fmt.Errorf("%q is not GROUP/KIND/NAMESPACE/NAME", arg)
		}
		ids = append(ids, object.ObjMetadata{
			GroupKind: schema.GroupKind{Group: parts[0], Kind: parts[1]},
			Namespace: parts[2],
			Name:      parts[3],
		})
	}
	return ids, nil
}
