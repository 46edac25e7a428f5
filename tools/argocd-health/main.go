// Command argocd-health runs an Argo CD resource health script on Kubernetes objects the way
// Argo CD's controller does: gopher-lua (Lua 5.1), a fresh state per object with only the
// package, base and table libraries opened, the object as the global `obj` (integers as
// numbers, as Argo CD's own conversion gives them), a one-second limit, and a returned table
// whose `status` must be one of Argo CD's health codes (else Unknown). The project's tests use
// it to check deploy/monitoring/argocd-health.yaml under the runtime Argo CD really has; Argo
// CD's "safe" os library is not provided, so a script that needs os fails here.
//
// Usage: argocd-health SCRIPT_FILE < objects.json   (one object, or a JSON array of them)
// Output: one JSON line per object: {"status": ..., "message": ...} or {"error": ...}.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// healthCodes are the statuses Argo CD accepts from a script.
var healthCodes = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

type verdict struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health SCRIPT_FILE < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(2)
	}
	objects, err := readObjects(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health: stdin is not JSON:", err)
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	for _, object := range objects {
		if err := out.Encode(judge(string(script), object)); err != nil {
			os.Exit(1)
		}
	}
}

// readObjects keeps numbers as json.Number, so that integers reach Lua as Argo CD's
// unstructured objects give them (int64), not through float64.
func readObjects(r io.Reader) ([]any, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	var value any
	if err := decoder.Decode(&value); err != nil {
		return nil, err
	}
	if list, ok := value.([]any); ok {
		return list, nil
	}
	return []any{value}, nil
}

func judge(script string, object any) verdict {
	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	// In Argo CD's order.
	for _, library := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		opener := lua.P{Fn: state.NewFunction(library.open), Protect: true}
		if err := state.CallByParam(opener, lua.LString(library.name)); err != nil {
			return verdict{Error: err.Error()}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	state.SetContext(ctx)
	state.SetGlobal("obj", toLua(state, object))
	if err := state.DoString(script); err != nil {
		return verdict{Error: err.Error()}
	}
	result, ok := state.Get(-1).(*lua.LTable)
	if !ok {
		return verdict{Error: "the script did not return a table"}
	}
	status := lua.LVAsString(result.RawGetString("status"))
	if !healthCodes[status] {
		return verdict{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return verdict{Status: status, Message: lua.LVAsString(result.RawGetString("message"))}
}

func toLua(state *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		if whole, err := v.Int64(); err == nil {
			return lua.LNumber(whole)
		}
		if real, err := v.Float64(); err == nil {
			return lua.LNumber(real)
		}
		return lua.LString(v.String())
	case []any:
		table := state.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(state, item))
		}
		return table
	case map[string]any:
		table := state.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(state, item))
		}
		return table
	}
	return lua.LNil
}
