// Command kstatus runs the real kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status),
// the status logic shared by Flux, kpt and the cli-utils applier, on Kubernetes objects, so
// the Python tests check the operator's conditions against it instead of a re-implementation.
//
// Two modes:
//
//	kstatus                judge the objects on stdin (status.Compute, what Flux's health checks
//	                       and `kpt live status` compute)
//	kstatus wait ...       watch objects in a cluster until all are Current or one is Failed, as
//	                       the cli-utils applier's wait does (see wait.go)
//
// Judging: stdin holds one JSON object, a JSON array of objects, or a Kubernetes List (`items`).
// Output (stdout): one JSON line per object, in input order:
//
//	{"name", "namespace", "kind", "status", "message", "conditions"} or, if Compute fails, "error".
//
// Exit status is 0 unless stdin is not JSON, so one bad object never hides the others' results.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// line is one output record. Conditions are the ones kstatus computed (Reconciling,
// Stalled), not a copy of the object's own; "status" is absent only when "error" is set.
type line struct {
	Name       string             `json:"name"`
	Namespace  string             `json:"namespace"`
	Kind       string             `json:"kind"`
	Status     string             `json:"status,omitempty"`
	Message    string             `json:"message"`
	Conditions []status.Condition `json:"conditions"`
	Error      string             `json:"error,omitempty"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "wait" {
		os.Exit(wait(os.Args[2:]))
	}
	judge()
}

// judge prints kstatus' verdict on each object of stdin.
func judge() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: reading stdin:", err)
		os.Exit(2)
	}
	objs, err := decode(data)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: stdin is not a JSON object, array or List:", err)
		os.Exit(2)
	}

	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for _, obj := range objs {
		u := &unstructured.Unstructured{Object: obj}
		l := line{Name: u.GetName(), Namespace: u.GetNamespace(), Kind: u.GetKind(),
			Conditions: []status.Condition{}} // [] rather than null keeps the tests' parsing simple
		if res, err := status.Compute(u); err != nil {
			l.Error = err.Error()
		} else {
			l.Status, l.Message = res.Status.String(), res.Message
			if res.Conditions != nil {
				l.Conditions = res.Conditions
			}
		}
		// Encoding strings cannot fail, and a write error surfaces at Flush below.
		_ = enc.Encode(l)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: writing stdout:", err)
		os.Exit(2)
	}
}

// decode accepts the three shapes a test is likely to have at hand. apimachinery's json
// turns integers into int64, as the API machinery does: with encoding/json's float64 the
// unstructured accessors would not see metadata.generation or status.observedGeneration.
func decode(data []byte) ([]map[string]interface{}, error) {
	var v interface{}
	if err := utiljson.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	var items []interface{}
	switch t := v.(type) {
	case []interface{}:
		items = t
	case map[string]interface{}:
		if list, ok := t["items"].([]interface{}); ok {
			items = list
		} else {
			items = []interface{}{t}
		}
	default:
		return nil, fmt.Errorf("expected an object or an array, got %T", v)
	}
	objs := make([]map[string]interface{}, 0, len(items))
	for i, it := range items {
		m, ok := it.(map[string]interface{})
		if !ok {
			return nil, fmt.Errorf("item %d is not an object", i)
		}
		objs = append(objs, m)
	}
	return objs, nil
}
